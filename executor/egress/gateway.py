"""The egress gateway: a Unix socket per task, plain HTTP in, HTTPS to declared upstreams out.

A task with egress has no network; its one way out is the socket `open_socket` makes for it
alone, in a directory of its own that the runtime mounts read-only at CONTAINER_DIR. Because
each socket belongs to one task, a request's socket says which execution it is for: no token
in the sandbox. Until `bind` names the execution (a pre-started container gets its socket at
creation and is bound at the claim), every request is refused 503 and not recorded.

The task addresses an upstream by its declared name as the host: `http://<name>/<rest>` (Host:
<name>), forwarded to the declared url's path prefix + `/<rest>`, query kept. Everything else is
refused with a small problem+json body and recorded (docs/egress.md lists the reasons). The caps
of the policy are enforced here; the first one hit calls `on_limit` once, and the caller ends
the task. Bodies are streamed, never buffered whole; nothing logs a header value or a body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from executor.egress.policy import EgressPolicy, Injection, Upstream, unsafe_segment
from executor.egress.records import FAILED, FORWARDED, MAX_METHOD, MAX_PATH, REFUSED, EgressEntry, clean_text
from executor.errors import ConfigurationError

SOCKET_NAME = "egress.sock"
CONTAINER_DIR = "/run/executor/egress"  # where the runtime mounts a lease's host_dir, read-only
CONTAINER_SOCKET = f"{CONTAINER_DIR}/{SOCKET_NAME}"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with its terminating NUL
CHUNK = 64 * 1024
_LEASE_DIR = re.compile(r"[0-9a-f]{16}")  # a lease's directory under the root (open_socket)
MAX_IN_FLIGHT = 16  # concurrent requests of one task; more are refused 429 (too_many_in_flight)
PROBLEM_PREFIX = "urn:executor:egress:"

# What on_limit is called with: the task's error type, by the cap that was hit.
LIMIT_KINDS = {
    "limit_requests": "egress_requests_exceeded",
    "limit_bytes_out": "egress_bytes_exceeded",
    "limit_bytes_in": "egress_bytes_exceeded",
    "limit_time": "egress_time_exceeded",
}

# Headers that belong to one connection (RFC 9110 §7.6.1), never passed on either way, plus the
# ones the gateway owns on the way out (docs/egress.md, "Headers").
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
    "proxy-authenticate", "proxy-authorization", "http2-settings",
})
OWNED_OUT = frozenset({"host", "content-length", "expect"})

_PATH_CHARS = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*")
_QUERY_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")

log = logging.getLogger(__name__)


class _QuietParserLog(logging.Filter):
    """aiohttp logs a malformed request with the bytes it choked on, which may be a header value:
    keep the fact and the error's class, drop the text."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        record.msg = "egress socket: a request was refused before it reached the gateway (%s)"
        record.args = (type(error).__name__ if error else "-",)
        record.exc_info = None
        record.exc_text = None
        return True


_server_log = logging.getLogger("executor.egress.server")
_server_log.addFilter(_QuietParserLog())


@dataclass(frozen=True, eq=False)
class SocketLease:
    """One task's socket. `host_dir` (holding only `egress.sock`) is what the runtime mounts,
    read-only, at CONTAINER_DIR."""

    id: str
    host_dir: Path
    _slot: _Slot = field(repr=False)

    @property
    def socket_path(self) -> Path:
        return self.host_dir / SOCKET_NAME


@dataclass(eq=False)
class _Execution:
    """What one bound execution has used, and what it sent."""

    execution_id: str
    agent_id: uuid.UUID
    policy: EgressPolicy
    on_limit: Callable[[str], None]
    requests: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    time_used: float = 0.0
    limit_hit: str | None = None  # the reason code of the first cap hit
    entries: list[EgressEntry] = field(default_factory=list)


@dataclass(eq=False)
class _Slot:
    host_dir: Path
    runner: web.ServerRunner | None = None
    execution: _Execution | None = None
    released: bool = False
    tasks: set[asyncio.Task[object]] = field(default_factory=set)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    release_task: asyncio.Future[list[EgressEntry]] | None = None


@dataclass(eq=False)
class _Call:
    """The record of one request, filled in as it goes."""

    seq: int
    method: str
    started: float
    upstream: str | None = None
    path: str = ""
    status: int = 0  # 0: no response reached the task
    bytes_out: int = 0
    bytes_in: int = 0
    outcome: str = FAILED
    reason: str | None = None
    bytes_out_exceeded: bool = False
    response: web.StreamResponse | None = None  # once the answer's head went to the task

    def entry(self, now: float) -> EgressEntry:
        return EgressEntry(
            seq=self.seq, method=self.method, upstream=self.upstream, path=self.path, status=self.status,
            bytes_out=self.bytes_out, bytes_in=self.bytes_in, duration_ms=max(0, round((now - self.started) * 1000)),
            outcome=self.outcome, reason=None if self.outcome == FORWARDED else self.reason,
        )


class _Refused(Exception):
    """A request the gateway does not forward (recorded as refused unless said otherwise)."""

    def __init__(self, status: int, reason: str, detail: str, *, headers: dict[str, str] | None = None,
                 outcome: str = REFUSED) -> None:
        super().__init__(reason)
        self.status, self.reason, self.detail, self.headers, self.outcome = status, reason, detail, headers, outcome


class EgressGateway:
    """Every task socket of this process, and the one HTTPS client they share."""

    def __init__(self, root: Path, *, ca_file: Path | None,
                 reveal: Callable[[uuid.UUID, str], Awaitable[str | None]],
                 max_in_flight: int = MAX_IN_FLIGHT, host_allowed: Callable[[str], bool] | None = None) -> None:
        self._root = Path(root).absolute()
        longest = self._root / ("0" * 16) / SOCKET_NAME
        if len(os.fsencode(longest)) > MAX_SOCKET_PATH:
            raise ConfigurationError(
                f"the egress directory {str(self._root)!r} is too long for a Unix socket path "
                f"({len(os.fsencode(longest))} bytes with <16 hex>/{SOCKET_NAME}, at most {MAX_SOCKET_PATH}): "
                "set EXECUTOR_EGRESS_DIR to a shorter path")
        self._ca_file = ca_file
        self._reveal = reveal
        self._max_in_flight = max_in_flight
        # The operator's allow-list, checked again at every request, not only at registration: a
        # host no longer allowed (EXECUTOR_EGRESS_ALLOWED_HOSTS narrowed) is refused for versions
        # declared before. None: no check here.
        self._host_allowed = host_allowed
        self._session: aiohttp.ClientSession | None = None
        self._slots: dict[str, _Slot] = {}

    async def start(self) -> None:
        """Make the root, and clear what a crashed run of this instance left in it: the root is this
        instance's alone (executor/service.py egress_root), and no socket of this run exists yet."""
        self._root.mkdir(mode=0o755, parents=True, exist_ok=True)
        for leftover in self._root.iterdir():
            if _LEASE_DIR.fullmatch(leftover.name) and leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
        context = ssl.create_default_context()
        if self._ca_file is not None:
            context.load_verify_locations(cafile=str(self._ca_file))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=256),
            cookie_jar=aiohttp.DummyCookieJar(),  # a cookie of one task must never reach another's request
            auto_decompress=False,  # bytes pass as they are; Content-Encoding stays true
            trust_env=False,  # no HTTP(S)_PROXY, no .netrc: the gateway goes straight to the upstream
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        )

    async def close(self) -> None:
        """Release every socket still open (their records are dropped), then the client."""
        for slot in list(self._slots.values()):
            await self._release(slot)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def open_socket(self) -> SocketLease:
        """A new directory under the root holding only a listening `egress.sock` (0666, so that the
        task's unprivileged user can connect); bound to no execution yet."""
        if self._session is None:
            raise RuntimeError("EgressGateway.start() was not called")
        lease_id = secrets.token_hex(8)
        host_dir = self._root / lease_id
        slot = _Slot(host_dir)
        host_dir.mkdir(mode=0o755)
        os.chmod(host_dir, 0o755)  # whatever the umask
        try:
            server = web.Server(partial(self._handle, slot), handler_cancellation=True, access_log=None,
                                logger=_server_log, keepalive_timeout=75)
            slot.runner = web.ServerRunner(server, shutdown_timeout=1.0)
            await slot.runner.setup()
            site = web.UnixSite(slot.runner, str(host_dir / SOCKET_NAME))
            await site.start()
            os.chmod(host_dir / SOCKET_NAME, 0o666)
        except BaseException:
            if slot.runner is not None:
                await slot.runner.cleanup()
            shutil.rmtree(host_dir, ignore_errors=True)
            raise
        self._slots[lease_id] = slot
        return SocketLease(lease_id, host_dir, slot)

    def bind(self, lease: SocketLease, execution_id: str, agent_id: uuid.UUID, policy: EgressPolicy,
             on_limit: Callable[[str], None]) -> None:
        """From now on, requests on this socket are `execution_id`'s, under `policy`."""
        slot = lease._slot
        if slot.released or self._slots.get(lease.id) is not slot:
            raise RuntimeError(f"egress socket {lease.id} is released or not this gateway's")
        if slot.execution is not None:
            raise RuntimeError(f"egress socket {lease.id} is bound already")
        slot.execution = _Execution(execution_id, agent_id, policy, on_limit)

    async def release(self, lease: SocketLease) -> list[EgressEntry]:
        """Stop listening, end the requests in flight, remove the directory; the execution's
        records in order (none if never bound). Calling it again gives the same list."""
        return list(await self._release(lease._slot))

    async def _release(self, slot: _Slot) -> list[EgressEntry]:
        if slot.release_task is None:
            slot.release_task = asyncio.ensure_future(self._shut(slot))
        return await asyncio.shield(slot.release_task)

    async def _shut(self, slot: _Slot) -> list[EgressEntry]:
        slot.released = True
        runner = slot.runner
        try:
            if runner is not None:
                for site in list(runner.sites):
                    await site.stop()  # no new connection
            for task in list(slot.tasks):
                task.cancel()
            if slot.tasks:
                try:
                    await asyncio.wait_for(slot.idle.wait(), timeout=10)
                except TimeoutError:
                    log.warning("egress socket %s: %d requests did not end when cancelled",
                                slot.host_dir.name, len(slot.tasks))
            if runner is not None:
                await runner.cleanup()  # closes the connections left
        finally:
            shutil.rmtree(slot.host_dir, ignore_errors=True)
            self._slots.pop(slot.host_dir.name, None)
        execution = slot.execution
        return sorted(execution.entries, key=lambda entry: entry.seq) if execution else []

    # -- one request ------------------------------------------------------------------------

    async def _handle(self, slot: _Slot, request: web.BaseRequest) -> web.StreamResponse:
        execution = slot.execution
        if slot.released or execution is None:
            return _problem(request, 503, "not_bound", "this socket is bound to no task")
        if execution.limit_hit is not None:  # the task is being ended; the record stops at the cap
            return _problem(request, 429, execution.limit_hit, "an egress cap was reached")
        loop = asyncio.get_running_loop()
        execution.requests += 1
        call = _Call(execution.requests, clean_text(request.method, MAX_METHOD), loop.time())
        task = asyncio.current_task()
        assert task is not None
        slot.tasks.add(task)
        slot.idle.clear()
        try:
            return await self._serve(slot, execution, call, request)
        except asyncio.CancelledError:
            call.outcome, call.reason = FAILED, "released" if slot.released else "client_gone"
            raise
        finally:
            execution.entries.append(call.entry(loop.time()))
            slot.tasks.discard(task)
            if not slot.tasks:
                slot.idle.set()

    async def _serve(self, slot: _Slot, execution: _Execution, call: _Call,
                     request: web.BaseRequest) -> web.StreamResponse:
        try:
            upstream, path, query = self._admit(slot, execution, call, request)
            return await self._forward(execution, call, request, upstream, path, query)
        except _Refused as refusal:
            call.outcome, call.reason = refusal.outcome, refusal.reason
            call.status = refusal.status
            return _problem(request, refusal.status, refusal.reason, refusal.detail, refusal.headers)

    def _admit(self, slot: _Slot, execution: _Execution, call: _Call,
               request: web.BaseRequest) -> tuple[Upstream, str, str]:
        """The upstream, path and query of a request the gateway may forward, or _Refused."""
        limits = execution.policy.limits
        call.path = clean_text(_recorded_path(request.raw_path), MAX_PATH)
        if execution.requests > limits.requests:
            self._hit(execution, "limit_requests")
            raise _Refused(429, "limit_requests", f"this task may make {limits.requests} egress requests")
        if request.method == "CONNECT":
            raise _Refused(405, "connect_refused", "CONNECT tunnels are refused: send plain HTTP requests "
                                                   "to http://<upstream name>/<path>")
        name, path, query = _target(request)
        if "upgrade" in request.headers:
            raise _Refused(403, "upgrade_refused", "protocol upgrades (WebSocket, h2c) are refused")
        upstream = execution.policy.upstream(name) if name else None
        if upstream is None:
            raise _Refused(403, "undeclared_upstream",
                           "address a declared upstream by its name: http://<name>/<path> (Host: <name>)")
        call.upstream = upstream.name
        if self._host_allowed is not None and not self._host_allowed(URL(upstream.url).host or ""):
            raise _Refused(403, "host_not_allowed", f"the operator no longer allows {upstream.name}'s host")
        if request.method not in upstream.methods:
            raise _Refused(405, "method_not_allowed", f"{upstream.name} allows {', '.join(upstream.methods)}",
                           headers={"Allow": ", ".join(upstream.methods)})
        if not _path_is_safe(path):
            raise _Refused(403, "path_outside_prefix", "the path must stay under the declared prefix: no '.' or "
                                                       "'..' segments, empty segments or encoded separators")
        if query and (not _QUERY_CHARS.fullmatch(query) or _BAD_PERCENT.search(query)):
            raise _Refused(400, "bad_target", "the query holds a character that must be percent-encoded")
        if execution.time_used >= limits.time_s:
            self._hit(execution, "limit_time")
            raise _Refused(429, "limit_time", f"this task may spend {limits.time_s:g} s in egress requests")
        length = request.content_length
        if length is not None and execution.bytes_out + length > limits.bytes_out:
            self._hit(execution, "limit_bytes_out")
            raise _Refused(413, "limit_bytes_out", f"this task may send {limits.bytes_out} body bytes in all")
        if len(slot.tasks) > self._max_in_flight:
            raise _Refused(429, "too_many_in_flight", f"at most {self._max_in_flight} requests at a time")
        return upstream, path, query

    async def _forward(self, execution: _Execution, call: _Call, request: web.BaseRequest, upstream: Upstream,
                       path: str, query: str) -> web.StreamResponse:
        assert self._session is not None
        limits = execution.policy.limits
        loop = asyncio.get_running_loop()
        started = loop.time()
        secret: str | None = None
        try:
            async with asyncio.timeout(max(limits.time_s - execution.time_used, 0.001)) as deadline:
                headers = _outgoing_headers(request.headers, upstream.inject)
                if upstream.inject is not None:
                    secret = await self._secret(execution, upstream.inject)
                    headers[upstream.inject.header] = upstream.inject.render(secret)
                if request.content_length is not None:
                    headers["Content-Length"] = str(request.content_length)
                if request.headers.get("Expect", "").lower() == "100-continue":
                    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = _counted_body(request, execution, call) if request.body_exists else None
                url = _upstream_url(upstream, path, query)
                try:
                    async with self._session.request(request.method, url, headers=headers, data=body,
                                                     allow_redirects=False) as answer:
                        return await self._relay(request, answer, execution, call, secret)
                except (aiohttp.ClientError, _BytesOutExceeded) as error:
                    if call.bytes_out_exceeded:
                        self._hit(execution, "limit_bytes_out")
                    raise _upstream_failure(call, error) from None
        except TimeoutError:
            if not deadline.expired():
                raise
            self._hit(execution, "limit_time")
            if call.response is not None:  # mid-answer: cut it
                call.outcome, call.reason = FAILED, "limit_time"
                _cut(request)
                return call.response
            raise _Refused(504, "limit_time", f"this task may spend {limits.time_s:g} s in egress requests",
                           outcome=FAILED) from None
        finally:
            execution.time_used += loop.time() - started
            if execution.time_used > limits.time_s:
                self._hit(execution, "limit_time")  # e.g. concurrent requests that together went over

    async def _secret(self, execution: _Execution, inject: Injection) -> str:
        try:
            value = await self._reveal(execution.agent_id, inject.secret)
        except Exception as error:
            log.warning("egress: the secret %r of agent %s could not be read (%s)", inject.secret,
                        execution.agent_id, type(error).__name__)
            value = None
        if value is None:
            raise _Refused(502, "secret_unavailable", f"the agent's secret {inject.secret!r} is not set",
                           outcome=FAILED)
        if not value or not _HEADER_VALUE.fullmatch(value):
            raise _Refused(502, "secret_invalid", f"the agent's secret {inject.secret!r} cannot go in a header",
                           outcome=FAILED)
        return value

    async def _relay(self, request: web.BaseRequest, answer: aiohttp.ClientResponse, execution: _Execution,
                     call: _Call, secret: str | None) -> web.StreamResponse:
        """The upstream's answer, streamed back; the body cut where bytes_in runs out."""
        limits = execution.policy.limits
        call.status = answer.status
        has_body = request.method != "HEAD" and answer.status not in (204, 304) and answer.status >= 200
        length = answer.content_length if has_body else None
        if length is not None and execution.bytes_in + length > limits.bytes_in:
            self._hit(execution, "limit_bytes_in")
            raise _Refused(502, "limit_bytes_in", f"this task may receive {limits.bytes_in} body bytes in all",
                           outcome=FAILED)
        response = web.StreamResponse(status=answer.status, reason=answer.reason)
        _copy_answer_headers(answer.headers, response, secret)
        if length is not None:
            response.content_length = length
        await response.prepare(request)
        call.response = response
        try:
            async for chunk in answer.content.iter_chunked(CHUNK):
                if execution.bytes_in + len(chunk) > limits.bytes_in:
                    self._hit(execution, "limit_bytes_in")
                    call.outcome, call.reason = FAILED, "limit_bytes_in"
                    _cut(request)
                    return response
                execution.bytes_in += len(chunk)
                call.bytes_in += len(chunk)
                await response.write(chunk)
        except aiohttp.ClientError as error:  # the upstream broke off mid-body: so does the task's answer
            call.outcome, call.reason = FAILED, _upstream_failure(call, error).reason
            _cut(request)
            return response
        await response.write_eof()
        call.outcome = FORWARDED
        return response

    def _hit(self, execution: _Execution, reason: str) -> None:
        """The first cap hit calls on_limit, once per execution."""
        if execution.limit_hit is not None:
            return
        execution.limit_hit = reason
        log.info("egress: execution %s reached a cap (%s)", execution.execution_id, reason)
        try:
            execution.on_limit(LIMIT_KINDS[reason])
        except Exception:
            log.exception("egress: the on_limit callback of execution %s failed", execution.execution_id)


# -- helpers ------------------------------------------------------------------------------------


def _problem(request: web.BaseRequest, status: int, reason: str, detail: str,
             headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"type": PROBLEM_PREFIX + reason, "status": status, "detail": detail})
    response = web.Response(status=status, text=body, content_type="application/problem+json", headers=headers)
    if request.body_exists or request.method == "CONNECT":
        response.force_close()  # an unread body (or a tunnel's bytes) must not be read as the next request
    return response


def _target(request: web.BaseRequest) -> tuple[str | None, str, str]:
    """(upstream name, path, query) from the request target: origin-form `/path?query` with the
    name in Host, or absolute-form `http://name/path?query` (whose name must agree with Host)."""
    raw = request.raw_path
    host_header = request.headers.get("Host")
    if raw.startswith("/"):
        name = _host_name(host_header) if host_header is not None else None
        rest = raw
    elif raw[:7].lower() == "http://":
        authority_end = min((raw.find(mark, 7) for mark in "/?#" if raw.find(mark, 7) >= 0), default=len(raw))
        name = _host_name(raw[7:authority_end])
        rest = raw[authority_end:]
        if not rest.startswith("/"):
            rest = "/" + rest
        if host_header is not None and _host_name(host_header) != name:
            raise _Refused(400, "bad_target", "the request target and the Host header name different upstreams")
    else:
        raise _Refused(400, "bad_target", "send http://<upstream name>/<path>: no https:// target, "
                                          "authority or asterisk form")
    if "#" in rest:
        raise _Refused(400, "bad_target", "no fragment in a request target")
    path, _, query = rest.partition("?")
    return name, path, query


def _recorded_path(raw: str) -> str:
    """The path of a request target as recorded: without the query, and without the scheme and
    name of an absolute-form target; an authority (CONNECT) or asterisk target as it is."""
    if raw[:7].lower() == "http://" or raw[:8].lower() == "https://":
        start = raw.find("/", raw.find("//") + 2)
        raw = raw[start:] if start >= 0 else "/"
    return raw.split("?", 1)[0].split("#", 1)[0] if raw.startswith("/") else raw


def _host_name(value: str) -> str | None:
    """The upstream name a Host value names: `name` or `name:80`, any case; None otherwise."""
    value = value.strip().lower()
    if value.endswith(":80"):
        value = value[:-3]
    return value if value and ":" not in value and "@" not in value else None


def _path_is_safe(path: str) -> bool:
    """No dot segment (plain, encoded or `..;`), no empty segment (`//`) but a trailing one, no
    encoded separator or double encoding: nothing a server could resolve outside the prefix."""
    if not _PATH_CHARS.fullmatch(path) or _BAD_PERCENT.search(path):
        return False
    segments = path.split("/")[1:]
    for position, segment in enumerate(segments):
        if segment == "" and position < len(segments) - 1:
            return False
        if segment and unsafe_segment(segment):
            return False
    return True


def _upstream_url(upstream: Upstream, path: str, query: str) -> URL:
    """The declared prefix + the path (`/` alone is the prefix itself), the query as sent."""
    prefix = upstream.prefix
    full = prefix if path == "/" and prefix else prefix.rstrip("/") + path
    return URL(upstream.origin + full + (f"?{query}" if query else ""), encoded=True)


def _outgoing_headers(incoming: CIMultiDictProxy[str], inject: Injection | None) -> CIMultiDict[str]:
    """The task's headers but hop-by-hop ones (and those its Connection names), Host,
    Content-Length and Expect (the gateway sets them), and the injected one (overridden)."""
    dropped = set(HOP_BY_HOP | OWNED_OUT)
    for value in incoming.getall("Connection", []):
        dropped.update(token.strip().lower() for token in value.split(","))
    if inject is not None:
        dropped.add(inject.header.lower())
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        if name.lower() not in dropped:
            out.add(name, value)
    return out


def _copy_answer_headers(headers: CIMultiDictProxy[str], response: web.StreamResponse, secret: str | None) -> None:
    """The upstream's headers but hop-by-hop ones, Content-Length (set apart) and any that
    holds the injected secret's value (an upstream echoing it would hand it to the task)."""
    dropped = set(HOP_BY_HOP) | {"content-length"}
    for value in headers.getall("Connection", []):
        dropped.update(token.strip().lower() for token in value.split(","))
    for name, value in headers.items():
        if name.lower() in dropped or (secret and secret in value):
            continue
        response.headers.add(name, value)


async def _counted_body(request: web.BaseRequest, execution: _Execution, call: _Call) -> AsyncIterator[bytes]:
    """The task's body as it comes, counted against bytes_out; stops the request past the cap."""
    limit = execution.policy.limits.bytes_out
    async for chunk in request.content.iter_chunked(CHUNK):
        if execution.bytes_out + len(chunk) > limit:
            call.bytes_out_exceeded = True
            raise _BytesOutExceeded
        execution.bytes_out += len(chunk)
        call.bytes_out += len(chunk)
        yield chunk


class _BytesOutExceeded(Exception):
    pass


def _upstream_failure(call: _Call, error: Exception) -> _Refused:
    """What a failed upstream call becomes for the task (a 502 or 413, recorded as failed)."""
    if call.bytes_out_exceeded:
        return _Refused(413, "limit_bytes_out", "the request body went over this task's bytes_out cap",
                        outcome=FAILED)
    if isinstance(error, aiohttp.ClientSSLError | aiohttp.ClientConnectorCertificateError):
        reason, detail = "upstream_tls", "the upstream's TLS certificate or handshake failed"
    elif isinstance(error, aiohttp.ClientConnectorError):
        reason, detail = "upstream_unreachable", "the upstream could not be reached"
    else:
        reason, detail = "upstream_error", "the upstream connection failed"
    log.info("egress: %s (%s)", reason, type(error).__name__)
    return _Refused(502, reason, detail, outcome=FAILED)


def _cut(request: web.BaseRequest) -> None:
    """End the task's connection mid-body, so that a cut answer cannot pass for a whole one."""
    transport = request.transport
    if transport is not None:
        transport.close()


__all__ = ["CONTAINER_DIR", "CONTAINER_SOCKET", "SOCKET_NAME", "EgressGateway", "SocketLease"]
