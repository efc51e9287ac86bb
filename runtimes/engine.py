"""The Docker engine as the rest of the runtimes see it: one docker-py client
and a bounded thread pool, so that blocking docker-py calls never run on the
event loop."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import docker
import docker.errors
from docker.transport.unixconn import UnixHTTPAdapter
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

T = TypeVar("T")


def _transient(exc: BaseException) -> bool:
    """Engine hiccups worth one more try: connection errors and 5xx that are not 'no such …'."""
    if isinstance(exc, docker.errors.NotFound):
        return False
    if isinstance(exc, docker.errors.APIError):
        return exc.status_code is not None and exc.status_code >= 500
    return isinstance(exc, (ConnectionError, OSError))


class _OneSocketPool(UnixHTTPAdapter):
    """docker-py keys its connection pools by the whole URL (`…/containers/<id>/start`), at most
    25 of them: nearly every call on a new container opens a new connection to the engine and a
    new pool. The engine's socket is one place: one pool, its connections kept alive."""

    _KEY = "http+docker://localhost"

    def get_connection(self, url: Any, proxies: Any = None) -> Any:
        return super().get_connection(self._KEY, proxies)


def tune_for_unix_socket(client: docker.DockerClient, pool_size: int) -> None:
    """For an engine on its unix socket: one keep-alive pool, and no proxy settings looked up in
    the environment at every call (requests does, twice a call; a socket has no proxy). Measured
    on this machine: docker-py's own CPU over one container's 5 engine calls, 17.5 → 13 ms."""
    api = client.api
    adapter = api.adapters.get("http+docker://")
    if type(adapter) is not UnixHTTPAdapter:
        return  # TCP, TLS or ssh: docker-py's own handling (and the proxy settings) stay
    shared = _OneSocketPool(adapter.socket_path, adapter.timeout, max_pool_size=pool_size)
    api.mount("http+docker://", shared)
    api._custom_adapter = shared
    adapter.close()
    api.trust_env = False


class DockerEngine:
    def __init__(self, *, threads: int = 32, client: docker.DockerClient | None = None) -> None:
        # One client per process: version auto-detection costs a round trip,
        # and its connection pool must be as large as the thread pool. A client
        # given is used as it is.
        if client is None:
            client = docker.from_env(max_pool_size=threads)
            tune_for_unix_socket(client, threads)
        self.client = client
        self.api = self.client.api
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="docker")

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        # In the caller's context, so that what the call logs carries its execution id.
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._pool, functools.partial(context.run, fn, *args, **kwargs))

    async def call_retrying(self, fn: Callable[..., T], *args: Any, attempts: int = 4, **kwargs: Any) -> T:
        """For idempotent calls only (inspect, kill, remove): never for create or start."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_transient),
            wait=wait_exponential(multiplier=0.05, max=1.0),
            stop=stop_after_attempt(attempts),
            reraise=True,
        ):
            with attempt:
                return await self.call(fn, *args, **kwargs)
        raise AssertionError("unreachable")

    async def ping(self) -> bool:
        return bool(await self.call(self.api.ping))

    async def image_id(self, reference: str) -> str | None:
        """The content-addressed id of a local image, or None when the engine lacks it."""
        try:
            info = await self.call(self.api.inspect_image, reference)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                return None
            raise
        return info["Id"]

    async def list_images(self, repository_prefix: str) -> list[dict[str, Any]]:
        """Local images with a tag under `repository_prefix` (e.g. "executor/")."""
        found = []
        for image in await self.call(self.api.images):
            tags = [tag for tag in image.get("RepoTags") or [] if tag.startswith(repository_prefix)]
            if tags:
                found.append({"id": image["Id"], "tags": sorted(tags), "size": image.get("Size"),
                              "created": image.get("Created")})
        return found

    async def remove_image(self, image_id: str) -> None:
        """Remove an image by id, every tag of it included; the engine refuses one in use."""
        await self.call(self.api.remove_image, image_id, force=True, noprune=False)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()
