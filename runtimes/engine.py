"""The Docker engine as the rest of the runtimes see it: one docker-py client
and a bounded thread pool, so that blocking docker-py calls never run on the
event loop; and, for an engine on a local unix socket, a task's lifecycle calls
made on the event loop over that socket (runtimes/engine_socket.py)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import re
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
from docker.transport.unixconn import UnixHTTPAdapter
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from runtimes.engine_socket import EngineSocket

T = TypeVar("T")

# What an image reference may be (the distribution reference grammar: [host[:port]/]path[:tag]
# [@digest]), or an image id, full or short. docker-py puts a reference into the URL path
# unquoted ("/" and ".." included), so nothing else is ever sent: "/" would ask for the image
# list, "x/../../containers/…" for another endpoint.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_IMAGE_REFERENCE = re.compile(
    rf"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)?"
    rf"{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?"
    rf"|(?:sha256:)?[0-9a-f]{{12,64}}")


def is_image_reference(reference: str) -> bool:
    return len(reference) <= 512 and _IMAGE_REFERENCE.fullmatch(reference) is not None


def _transient(exc: BaseException) -> bool:
    """Engine hiccups worth one more try: connection errors and 5xx that are not 'no such …'."""
    if isinstance(exc, docker.errors.NotFound):
        return False
    if isinstance(exc, docker.errors.APIError):
        return exc.status_code is not None and exc.status_code >= 500
    return isinstance(exc, (ConnectionError, OSError))


class _OneSocketPool(UnixHTTPAdapter):  # type: ignore[misc]  # docker-py has no types: its base class is Any
    """docker-py keys its connection pools by the whole URL (`…/containers/<id>/start`), at most
    25 of them: nearly every call on a new container opens a new connection to the engine and a
    new pool. The engine's socket is one place: one pool, its connections kept alive."""

    _KEY = "http+docker://localhost"

    def get_connection(self, url: Any, proxies: Any = None) -> Any:
        return super().get_connection(self._KEY, proxies)


def tune_for_unix_socket(client: docker.DockerClient, pool_size: int) -> str | None:
    """For an engine on its unix socket: one keep-alive pool, and no proxy settings looked up in
    the environment at every call (requests does, twice a call; a socket has no proxy). Measured
    on this machine: docker-py's own CPU over one container's 5 engine calls, 17.5 → 13 ms.
    Returns the socket's path, or None for an engine elsewhere."""
    api = client.api
    adapter = api.adapters.get("http+docker://")
    if type(adapter) is not UnixHTTPAdapter:
        return None  # TCP, TLS or ssh: docker-py's own handling (and the proxy settings) stay
    shared = _OneSocketPool(adapter.socket_path, adapter.timeout, max_pool_size=pool_size)
    api.mount("http+docker://", shared)
    api._custom_adapter = shared
    adapter.close()
    api.trust_env = False
    return str(adapter.socket_path)


class DockerEngine:
    def __init__(self, *, threads: int = 32, client: docker.DockerClient | None = None) -> None:
        # One client per process: version auto-detection costs a round trip,
        # and its connection pool must be as large as the thread pool. A client
        # given is used as it is, and makes every call itself.
        self.socket: EngineSocket | None = None
        if client is None:
            client = docker.from_env(max_pool_size=threads)
            path = tune_for_unix_socket(client, threads)
            if path is not None:
                # A task's lifecycle calls go over the socket on the event loop (engine_socket.py).
                self.socket = EngineSocket(path, client.api._version, connections=2 * threads)
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
        return await _retrying(lambda: self.call(fn, *args, **kwargs), attempts)

    # A task container's lifecycle: over the socket when there is one, else through docker-py.

    async def create_container(self, **options: Any) -> str:
        """The new container's id; `options` are docker-py's `create_container` keywords."""
        if self.socket is None:
            return str((await self.call(self.api.create_container, **options))["Id"])
        name = options.pop("name", None)
        return await self.socket.create_container(self.api.create_container_config(**options), name)

    async def attach(self, container_id: str) -> tuple[socket.socket, Any]:
        """Its stdin, stdout and stderr on a socket, before its start; with what else holds that
        socket's descriptor (docker-py's SocketIO) and must be closed with it, if anything."""
        if self.socket is not None:
            return await self.socket.attach(container_id), None
        attached = await self.call(self.api.attach_socket, container_id,
                                   params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        return attached._sock, attached  # the socket under docker-py's SocketIO wrapper

    async def start(self, container_id: str) -> None:
        if self.socket is None:
            await self.call(self.api.start, container_id)
        else:
            await self.socket.start(container_id)

    async def wait(self, container_id: str) -> dict[str, Any]:
        """Until it exits: the caller bounds the time."""
        if self.socket is None:
            return await self.call(self.api.wait, container_id)
        return await self.socket.wait(container_id)

    async def kill(self, container_id: str) -> None:
        """Retried: idempotent."""
        direct = self.socket
        if direct is None:
            await self.call_retrying(self.api.kill, container_id)
        else:
            await _retrying(lambda: direct.kill(container_id))

    async def remove_container(self, container_id: str) -> None:
        """Forced (a running one is killed first); retried: idempotent."""
        direct = self.socket
        if direct is None:
            await self.call_retrying(self.api.remove_container, container_id, force=True)
        else:
            await _retrying(lambda: direct.remove_container(container_id))

    async def inspect_container(self, container_id: str) -> dict[str, Any]:
        """Retried: idempotent."""
        direct = self.socket
        if direct is None:
            return await self.call_retrying(self.api.inspect_container, container_id)
        return await _retrying(lambda: direct.inspect_container(container_id))

    async def ping(self) -> bool:
        return bool(await self.call(self.api.ping))

    async def image_id(self, reference: str) -> str | None:
        """The content-addressed id of a local image, or None when the engine lacks it (or
        refuses the reference as malformed: no image can have that name)."""
        if not is_image_reference(reference):
            return None
        try:
            info = await self.call(self.api.inspect_image, reference)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code in (400, 404):
                return None
            raise
        return str(info["Id"])

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

    async def aclose(self) -> None:
        """close(), and the socket's session first (it belongs to the running loop)."""
        if self.socket is not None:
            await self.socket.close()
        self.close()


async def _retrying(make_call: Callable[[], Awaitable[T]], attempts: int = 4) -> T:
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(_transient),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        stop=stop_after_attempt(attempts),
        reraise=True,
    ):
        with attempt:
            return await make_call()
    raise AssertionError("unreachable")
