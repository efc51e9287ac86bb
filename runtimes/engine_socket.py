"""A task container's lifecycle calls, made on the event loop over the engine's unix socket.

docker-py sends every call through requests and urllib3, from a thread. Measured on this
machine: about 1.5-1.8 ms of CPU a call through the service's tuned docker-py client, against
0.4-0.6 ms through aiohttp's keep-alive client on the same socket, with no thread hop. On a
host whose engine already takes the cores, that CPU is taken from the engine.

So the six calls every task makes (create, attach, start, wait, remove; kill and inspect when
needed) go here, and docker-py keeps everything else. docker-py still builds each body
(`create_container_config`, `create_host_config`) and each error: callers see the
`docker.errors` and `requests.exceptions` they see from docker-py.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any
from urllib.parse import quote

import aiohttp
import docker.errors
import requests
import requests.exceptions

_DEFAULT_TIMEOUT_S = 60.0  # docker-py's DEFAULT_TIMEOUT_SECONDS
_HEAD_MAX = 16 * 1024  # an attach answer's head is about 120 bytes


class EngineSocket:
    """One aiohttp session per event loop, its connections kept alive to the engine's socket."""

    def __init__(self, path: str, api_version: str, *, connections: int) -> None:
        self.path = path
        self._prefix = f"/v{api_version}"
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            # A session belongs to the loop it was made on; close it with close() on that loop.
            connector = aiohttp.UnixConnector(path=self.path, limit=self._connections)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None

    async def _request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                       body: dict[str, Any] | None = None, timeout_s: float | None = _DEFAULT_TIMEOUT_S) -> Any:
        url = f"http://docker{self._prefix}{path}"
        data = headers = None
        if body is not None:
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json"}
        try:
            async with self._current_session().request(
                method, url, params=params, data=data, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                payload = await response.read()
                status, reason = response.status, response.reason or ""
        except TimeoutError as exc:
            raise requests.exceptions.ReadTimeout(f"the engine did not answer {method} {path} in time") from exc
        except aiohttp.ClientConnectionError as exc:
            raise requests.exceptions.ConnectionError(f"engine socket {self.path}: {exc}") from exc
        if status >= 400:
            raise _api_error(status, reason, url, payload)
        return json.loads(payload) if payload else None

    async def create_container(self, config: dict[str, Any], name: str | None = None) -> str:
        # docker-py's _post_json drops null fields (older engines cannot read them).
        body = {key: value for key, value in config.items() if value is not None}
        created = await self._request("POST", "/containers/create", params={"name": name} if name else None, body=body)
        return str(created["Id"])

    async def start(self, container_id: str) -> None:
        await self._request("POST", _container(container_id, "/start"))

    async def wait(self, container_id: str) -> dict[str, Any]:
        """Until the container exits: no timeout of its own, the caller bounds it."""
        result: dict[str, Any] = await self._request(
            "POST", _container(container_id, "/wait"), timeout_s=None
        )
        return result

    async def kill(self, container_id: str) -> None:
        await self._request("POST", _container(container_id, "/kill"))

    async def remove_container(self, container_id: str, *, force: bool = True) -> None:
        await self._request("DELETE", _container(container_id),
                            params={"force": "1" if force else "0"})

    async def inspect_container(self, container_id: str) -> dict[str, Any]:
        info: dict[str, Any] = await self._request("GET", _container(container_id, "/json"))
        return info

    async def attach(self, container_id: str) -> socket.socket:
        """The container's stdin, stdout and stderr on a non-blocking socket of its own, once the
        engine has answered the upgrade: what the container writes after its start is not lost."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        path = f"{self._prefix}{_container(container_id, '/attach')}?stdin=1&stdout=1&stderr=1&stream=1"
        request = (f"POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                   "Content-Length: 0\r\n\r\n").encode()
        try:
            async with asyncio.timeout(_DEFAULT_TIMEOUT_S):
                await loop.sock_connect(sock, self.path)
                await loop.sock_sendall(sock, request)
                head = await _read_head(loop, sock)
                status_line, *fields = head.decode("latin-1").split("\r\n")
                _, status, reason = (status_line.split(" ", 2) + [""])[:3]
                if int(status) not in (101, 200):  # a refusal: its body says why
                    length = next((int(field.split(":", 1)[1]) for field in fields
                                   if field.lower().startswith("content-length:")), 0)
                    body = b""
                    while len(body) < min(length, _HEAD_MAX):
                        chunk = await loop.sock_recv(sock, length - len(body))
                        if not chunk:
                            break
                        body += chunk
                    raise _api_error(int(status), reason, f"http://docker{path}", body)
        except docker.errors.APIError:
            sock.close()
            raise
        except (OSError, ValueError, IndexError) as exc:  # refused, cut off, or not an HTTP answer
            sock.close()
            raise requests.exceptions.ConnectionError(f"engine socket {self.path}: attach: {exc!r}") from exc
        except BaseException:
            sock.close()
            raise
        return sock


def _container(container_id: str, action: str = "") -> str:
    """A container's path in the API: only the engine's own id goes in, quoted all the same."""
    return f"/containers/{quote(container_id, safe='')}{action}"


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def _read_head(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """The answer's head, to its blank line, and not one byte of the stream after it (peeked
    first, then consumed exactly)."""
    head = b""
    while True:
        try:
            peeked = sock.recv(_HEAD_MAX, socket.MSG_PEEK)
        except BlockingIOError:
            await _readable(loop, sock)
            continue
        if not peeked:
            raise ConnectionError("the engine closed the attach connection")
        end = (head + peeked).find(b"\r\n\r\n")
        if end >= 0:
            return head + sock.recv(end + 4 - len(head))
        head += sock.recv(len(peeked))
        if len(head) > _HEAD_MAX:
            raise ConnectionError("the engine's attach answer has no end to its head")


def _api_error(status: int, reason: str, url: str, payload: bytes) -> docker.errors.APIError:
    """docker-py's own error for this answer (NotFound, ImageNotFound, APIError)."""
    response = requests.Response()
    response.status_code, response.reason, response.url, response._content = status, reason, url, payload
    try:
        docker.errors.create_api_error_from_http_exception(requests.exceptions.HTTPError(response=response))
    except docker.errors.APIError as error:
        return error
    raise AssertionError("unreachable")
