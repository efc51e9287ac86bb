"""A TCP proxy for the SDK tests that can lose an answer: it forwards HTTP/1.1 requests to the
service one by one and relays the answers, except that the first request matching `kill` reaches
the service, whose whole answer the proxy reads, and then the client's connection is closed
without that answer: a request that took effect but whose answer was lost on the way back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Exchange:
    request_head: bytes
    response_head: bytes
    killed: bool


@dataclass
class AnswerLosingProxy:
    upstream_host: str
    upstream_port: int
    kill: Callable[[bytes], bool]  # the request head of the one request whose answer is lost
    exchanges: list[Exchange] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _killed: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        try:
            while True:
                request = await _message(client_reader)
                if request is None:
                    return
                upstream_writer.write(request)
                await upstream_writer.drain()
                response = await _message(upstream_reader)
                if response is None:
                    return
                head = request.split(b"\r\n\r\n", 1)[0]
                lose = not self._killed and self.kill(head)
                self.exchanges.append(Exchange(head, response.split(b"\r\n\r\n", 1)[0], lose))
                if lose:
                    self._killed = True
                    return  # the service answered; the client never hears it
                client_writer.write(response)
                await client_writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            for writer in (client_writer, upstream_writer):
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()


async def _message(reader: asyncio.StreamReader) -> bytes | None:
    """One HTTP/1.1 message (head and a Content-Length or chunked body); None at a clean end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    headers = {line.split(b":", 1)[0].strip().lower(): line.split(b":", 1)[1].strip()
               for line in head.split(b"\r\n")[1:] if b":" in line}
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            body += size_line + chunk
            if size == 0:
                return head + body
    length = int(headers.get(b"content-length", b"0"))
    return head + (await reader.readexactly(length) if length else b"")
