"""A real HTTPS upstream on loopback (its own throwaway CA, trusted by the gateway alone), a
started gateway whose root is short enough for socket paths, and a client for a lease's socket."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

from executor.egress.gateway import EgressGateway, SocketLease
from executor.egress.policy import EgressLimits, EgressPolicy, Injection, Upstream

SECRET = "sk-test-0123456789abcdef"
AGENT = uuid.UUID("00000000-0000-4000-8000-000000000021")


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: dict[str, list[str]]
    body: int


@dataclass
class LoopbackUpstream:
    """The test upstream: what it was sent, and handles to hold or end its slow answers."""

    port: int
    seen: list[Seen] = field(default_factory=list)
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)
    slow_ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="egress-ca-"))
    path = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    yield path
    shutil.rmtree(folder, ignore_errors=True)


async def _answer(state: LoopbackUpstream, request: web.Request) -> web.StreamResponse:
    body = 0
    async for chunk in request.content.iter_any():
        body += len(chunk)
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    state.seen.append(Seen(request.method, request.path_qs, headers, body))
    path = request.path
    if path.endswith("/redirect"):
        return web.Response(status=302, headers={"Location": f"{state.base}/elsewhere"})
    if path.endswith("/sized"):
        return web.Response(body=b"x" * int(request.query["n"]))
    if path.endswith("/streamed"):
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(int(request.query["chunks"])):
            await response.write(b"y" * 1000)
        await response.write_eof()
        return response
    if path.endswith("/trickle"):  # a head and a first chunk, then nothing
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"t" * 10)
        state.slow_started.set()
        try:
            await asyncio.Event().wait()
        finally:
            state.slow_ended.set()
    if path.endswith("/slow"):
        state.slow_started.set()
        try:
            await asyncio.Event().wait()
        finally:
            state.slow_ended.set()
    if path.endswith("/echo-secret"):
        return web.json_response({"ok": True}, headers={"X-Echo": request.headers.get("Authorization", ""),
                                                        "X-Plain": "kept"})
    return web.json_response({"ok": True, "path": request.path_qs}, headers={"Set-Cookie": "session=abc"})


@pytest.fixture
async def upstream(ca: trustme.CA) -> AsyncIterator[LoopbackUpstream]:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    state = LoopbackUpstream(port=0)
    server = web.Server(lambda request: _answer(state, request), access_log=None, handler_cancellation=True)
    runner = web.ServerRunner(server, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    state.port = runner.addresses[0][1]
    yield state
    await runner.cleanup()


@pytest.fixture
async def gateway(ca_file: Path) -> AsyncIterator[EgressGateway]:
    root = Path(tempfile.mkdtemp(prefix="eg-", dir="/tmp"))
    revealed: dict[str, str] = {"model_key": SECRET, "bad_key": "line\r\nX-Evil: 1"}

    async def reveal(agent_id: uuid.UUID, name: str) -> str | None:
        assert agent_id == AGENT
        return revealed.get(name)

    gateway = EgressGateway(root / "s", ca_file=ca_file, reveal=reveal)
    await gateway.start()
    yield gateway
    await gateway.close()
    shutil.rmtree(root, ignore_errors=True)


def policy(upstream: LoopbackUpstream, *, methods: tuple[str, ...] = ("GET", "POST"), requests: int = 100,
           bytes_out: int = 2**20, bytes_in: int = 10 * 2**20, time_s: float = 60.0,
           inject: Injection | None = None, prefix: str = "/v1") -> EgressPolicy:
    return EgressPolicy(
        (
            Upstream("models", upstream.base + prefix, methods,
                     inject or Injection("Authorization", "model_key", "Bearer {}")),
            Upstream("plain", upstream.base + "/open", ("GET",), None),
        ),
        EgressLimits(requests, bytes_out, bytes_in, time_s),
    )


@dataclass
class Bound:
    lease: SocketLease
    limits_hit: list[str]


async def bind(gateway: EgressGateway, policy_: EgressPolicy, execution_id: str = "exe-1") -> Bound:
    lease = await gateway.open_socket()
    hits: list[str] = []
    gateway.bind(lease, execution_id, AGENT, policy_, hits.append)
    return Bound(lease, hits)


def client(lease: SocketLease) -> aiohttp.ClientSession:
    """A session that speaks over the lease's socket, as a task would."""
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(lease.socket_path)),
                                 cookie_jar=aiohttp.DummyCookieJar())

