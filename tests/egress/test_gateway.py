"""The egress gateway against a real HTTPS upstream on loopback, spoken to over real Unix sockets
as a task would: what is forwarded, what is refused and recorded, the caps, and the sockets'
lifecycle. No timed assertions: a cap on time is hit by an upstream that never answers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from executor.egress.gateway import SOCKET_NAME, EgressGateway, SocketLease
from executor.egress.policy import EgressLimits, EgressPolicy, Injection, Upstream
from executor.egress.records import EgressEntry, digest
from executor.errors import ConfigurationError
from tests.egress.conftest import AGENT, SECRET, LoopbackUpstream, bind, client, policy


async def raw(lease: SocketLease, request: bytes) -> tuple[int, bytes, bytes]:
    """(status, head, body) of one request written as bytes (no client to tidy the target up);
    the request should say `Connection: close`, or be one the gateway closes after."""
    reader, writer = await asyncio.open_unix_connection(str(lease.socket_path))
    try:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.read()
    finally:
        writer.close()
    return int(head.split(b" ", 2)[1]), head, body


def get(path: str, host: str = "models", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode()


def problem_type(body: bytes) -> str:
    document: dict[str, Any] = json.loads(body)
    assert set(document) == {"type", "status", "detail"}
    kind: str = document["type"]
    return kind.removeprefix("urn:executor:egress:")


# -- forwarding ----------------------------------------------------------------------------------


async def test_a_get_goes_to_the_declared_prefix_with_the_secret_injected(
        gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream))
    async with client(bound.lease) as session, session.get(
        "http://models/chat/completions?stream=false&q=a%20b",
        headers={"Authorization": "Bearer guessed", "Connection": "X-Hop", "X-Hop": "1", "X-Kept": "yes",
                 "Proxy-Authorization": "Basic eA=="},
    ) as answer:
        assert answer.status == 200
        assert await answer.json() == {"ok": True, "path": "/v1/chat/completions?stream=false&q=a%20b"}
        assert answer.headers["Set-Cookie"] == "session=abc"  # the task's to keep or not
        body_length = int(answer.headers["Content-Length"])
    [seen] = upstream.seen
    assert seen.method == "GET"
    assert seen.headers["authorization"] == [f"Bearer {SECRET}"]  # the task's own is overridden
    assert seen.headers["host"] == [f"localhost:{upstream.port}"]
    assert seen.headers["x-kept"] == ["yes"]
    assert seen.headers["user-agent"] == answer.request_info.headers.getall("User-Agent")  # the task's, as sent
    for dropped in ("x-hop", "proxy-authorization", "connection"):
        assert dropped not in seen.headers, dropped
    records = await gateway.release(bound.lease)
    assert records == [EgressEntry(1, "GET", "models", "/chat/completions", 200, 0, body_length,
                                   records[0].duration_ms, "forwarded")]
    assert bound.limits_hit == []


async def test_a_post_body_is_streamed_and_counted(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream))

    async def chunks() -> Any:
        for _ in range(10):
            yield b"z" * 3000

    async with client(bound.lease) as session:
        async with session.post("http://models/chat", data=b"a" * 5000,
                                headers={"Content-Type": "application/json"}) as answer:
            assert answer.status == 200
        async with session.post("http://models/chat", data=chunks()) as answer:  # chunked, no length
            assert answer.status == 200
    assert [(seen.method, seen.body) for seen in upstream.seen] == [("POST", 5000), ("POST", 30_000)]
    assert upstream.seen[0].headers["content-type"] == ["application/json"]
    assert upstream.seen[0].headers["content-length"] == ["5000"]
    records = await gateway.release(bound.lease)
    assert [(entry.seq, entry.bytes_out, entry.outcome) for entry in records] == [
        (1, 5000, "forwarded"), (2, 30_000, "forwarded")]
    assert digest(records)["bytes_out"] == 35_000


async def test_expect_100_continue_is_answered(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream))
    reader, writer = await asyncio.open_unix_connection(str(bound.lease.socket_path))
    writer.write(b"POST /chat HTTP/1.1\r\nHost: models\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
                 b"Connection: close\r\n\r\n")
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100 Continue")
    writer.write(b"body")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    writer.close()
    assert upstream.seen[0].body == 4
    assert "expect" not in upstream.seen[0].headers


async def test_the_root_path_is_the_prefix_itself(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    exact = await bind(gateway, policy(upstream, prefix="/v1/chat"))
    slash = await bind(gateway, policy(upstream, prefix="/v1/chat/"), "exe-2")
    assert (await raw(exact.lease, get("/?x=1")))[0] == 200
    assert (await raw(exact.lease, get("/more")))[0] == 200
    assert (await raw(slash.lease, get("/")))[0] == 200
    assert (await raw(slash.lease, get("/more")))[0] == 200
    assert [seen.path_qs for seen in upstream.seen] == ["/v1/chat?x=1", "/v1/chat/more", "/v1/chat/",
                                                        "/v1/chat/more"]


async def test_an_absolute_form_target_names_the_upstream(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream))
    status, _, _ = await raw(bound.lease, b"GET http://models/chat?a=1 HTTP/1.1\r\nHost: models\r\n"
                                          b"Connection: close\r\n\r\n")
    assert status == 200
    status, _, body = await raw(bound.lease, b"GET http://plain/x HTTP/1.1\r\nHost: models\r\n"
                                             b"Connection: close\r\n\r\n")
    assert (status, problem_type(body)) == (400, "bad_target")
    status, _, body = await raw(bound.lease, b"GET https://models/chat HTTP/1.1\r\nHost: models\r\n"
                                             b"Connection: close\r\n\r\n")
    assert (status, problem_type(body)) == (400, "bad_target")
    status, _, body = await raw(bound.lease, b"OPTIONS * HTTP/1.1\r\nHost: models\r\nConnection: close\r\n\r\n")
    assert (status, problem_type(body)) == (400, "bad_target")
    assert [seen.path_qs for seen in upstream.seen] == ["/v1/chat?a=1"]
    records = await gateway.release(bound.lease)
    assert [(entry.upstream, entry.path, entry.outcome, entry.reason) for entry in records] == [
        ("models", "/chat", "forwarded", None), (None, "/x", "refused", "bad_target"),
        (None, "/chat", "refused", "bad_target"), (None, "*", "refused", "bad_target")]


async def test_a_redirect_is_passed_back_not_followed(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream))
    async with client(bound.lease) as session, session.get("http://models/redirect", allow_redirects=False) as answer:
        assert answer.status == 302
        assert answer.headers["Location"] == f"{upstream.base}/elsewhere"
    assert [seen.path_qs for seen in upstream.seen] == ["/v1/redirect"]


async def test_a_head_request(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream, methods=("HEAD",)))
    async with client(bound.lease) as session, session.head("http://models/sized?n=100") as answer:
        assert answer.status == 200
    records = await gateway.release(bound.lease)
    assert [(entry.method, entry.bytes_in, entry.outcome) for entry in records] == [("HEAD", 0, "forwarded")]


async def test_a_response_header_holding_the_secret_is_dropped(
        gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream))
    async with client(bound.lease) as session, session.get("http://models/echo-secret") as answer:
        assert answer.status == 200
        assert "X-Echo" not in answer.headers
        assert answer.headers["X-Plain"] == "kept"
        assert SECRET not in str(answer.headers)


async def test_an_upstream_without_injection_gets_no_credential(
        gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream))
    assert (await raw(bound.lease, get("/x", host="plain", extra="Authorization: Bearer own\r\n")))[0] == 200
    [seen] = upstream.seen
    assert seen.path_qs == "/open/x"
    assert seen.headers["authorization"] == ["Bearer own"]  # the task's own header, no secret
    assert set(seen.headers) == {"host", "authorization"}  # the gateway adds nothing of its own
    assert SECRET not in str(seen.headers)


async def test_a_cookie_set_for_one_task_never_reaches_another(
        gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    first = await bind(gateway, policy(upstream))
    second = await bind(gateway, policy(upstream), "exe-2")
    assert (await raw(first.lease, get("/a")))[0] == 200  # answered with Set-Cookie
    assert (await raw(second.lease, get("/b")))[0] == 200
    assert "cookie" not in upstream.seen[1].headers


# -- refusals ------------------------------------------------------------------------------------


async def test_undeclared_hosts_and_methods_are_refused_and_recorded(
        gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream))
    async with client(bound.lease) as session:
        async with session.get("http://example.com/x") as answer:
            assert answer.status == 403
            assert problem_type(await answer.read()) == "undeclared_upstream"
        async with session.get(f"http://localhost:{upstream.port}/v1/x") as answer:
            assert answer.status == 403
        async with session.delete("http://models/x") as answer:
            assert answer.status == 405
            assert answer.headers["Allow"] == "GET, POST"
            assert problem_type(await answer.read()) == "method_not_allowed"
        async with session.post("http://plain/x", data=b"abc") as answer:
            assert answer.status == 405
    status, _, body = await raw(bound.lease, b"GET /x HTTP/1.0\r\n\r\n")  # no Host at all
    assert (status, problem_type(body)) == (403, "undeclared_upstream")
    status, _, body = await raw(bound.lease, get("/x", extra="Upgrade: websocket\r\n"))
    assert (status, problem_type(body)) == (403, "upgrade_refused")
    assert upstream.seen == []
    records = await gateway.release(bound.lease)
    assert [(entry.seq, entry.method, entry.upstream, entry.path, entry.status, entry.outcome, entry.reason)
            for entry in records] == [
        (1, "GET", None, "/x", 403, "refused", "undeclared_upstream"),
        (2, "GET", None, "/v1/x", 403, "refused", "undeclared_upstream"),
        (3, "DELETE", "models", "/x", 405, "refused", "method_not_allowed"),
        (4, "POST", "plain", "/x", 405, "refused", "method_not_allowed"),
        (5, "GET", None, "/x", 403, "refused", "undeclared_upstream"),
        (6, "GET", None, "/x", 403, "refused", "upgrade_refused"),
    ]
    assert bound.limits_hit == []


async def test_connect_is_refused(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream))
    for target in (b"models:443", f"localhost:{upstream.port}".encode()):
        status, head, body = await raw(bound.lease, b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target +
                                       b"\r\n\r\n")
        assert (status, problem_type(body)) == (405, "connect_refused")
        assert b"Connection: close" in head
    assert upstream.seen == []
    records = await gateway.release(bound.lease)
    assert [(entry.method, entry.path, entry.reason) for entry in records] == [
        ("CONNECT", "models:443", "connect_refused"), ("CONNECT", f"localhost:{upstream.port}", "connect_refused")]


@pytest.mark.parametrize("path", [
    "/../admin", "/a/../../admin", "/%2e%2e/admin", "/%2E%2E/admin", "/.%2e/admin", "/a/%2e%2e%2f%2e%2e/admin",
    "/..;/admin", "/a/..;x=1/admin", "/./admin", "/a/.", "/a/..", "//admin", "/a//b", "/%2fadmin", "/a%2F..",
    "/%5c../admin", "/a\\..\\admin", "/%252e%252e/admin", "/a/%00", "/a%0d%0aX:1", "/%zz",
])
async def test_a_path_that_could_leave_the_prefix_is_refused(
        gateway: EgressGateway, upstream: LoopbackUpstream, path: str) -> None:
    bound = await bind(gateway, policy(upstream))
    status, _, body = await raw(bound.lease, get(path))
    if status == 400:  # refused by the HTTP parser itself before the gateway saw it (a backslash)
        assert (await gateway.release(bound.lease)) == []
    else:
        assert (status, problem_type(body)) == (403, "path_outside_prefix")
        [entry] = await gateway.release(bound.lease)
        assert (entry.upstream, entry.outcome, entry.reason) == ("models", "refused", "path_outside_prefix")
    assert upstream.seen == []


async def test_a_missing_or_unusable_secret_sends_nothing(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    missing = await bind(gateway, policy(upstream, inject=Injection("X-Key", "not_set")))
    unusable = await bind(gateway, policy(upstream, inject=Injection("X-Key", "bad_key")), "exe-2")
    status, _, body = await raw(missing.lease, get("/x"))
    assert (status, problem_type(body)) == (502, "secret_unavailable")
    status, _, body = await raw(unusable.lease, get("/x"))
    assert (status, problem_type(body)) == (502, "secret_invalid")
    assert upstream.seen == []
    assert [(entry.outcome, entry.reason) for entry in await gateway.release(missing.lease)] == [
        ("failed", "secret_unavailable")]


async def test_an_unreachable_or_untrusted_upstream_is_a_502(ca_file: Path, upstream: LoopbackUpstream,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    root = Path(tempfile.mkdtemp(prefix="eg-", dir="/tmp"))

    async def reveal(agent_id: uuid.UUID, name: str) -> str | None:
        return SECRET

    untrusting = EgressGateway(root / "s", ca_file=None, reveal=reveal)  # the system CAs only
    await untrusting.start()
    try:
        closed_port = upstream.port + 1 if upstream.port < 65535 else upstream.port - 1
        declared = EgressPolicy(
            (Upstream("models", upstream.base, ("GET",)),
             Upstream("gone", f"https://localhost:{closed_port}", ("GET",))),
            EgressLimits(10, 0, 1000, 30),
        )
        bound = await bind(untrusting, declared)
        status, _, body = await raw(bound.lease, get("/x"))
        assert (status, problem_type(body)) == (502, "upstream_tls")
        status, _, body = await raw(bound.lease, get("/x", host="gone"))
        assert (status, problem_type(body)) == (502, "upstream_unreachable")
        records = await untrusting.release(bound.lease)
        assert [(entry.outcome, entry.reason) for entry in records] == [
            ("failed", "upstream_tls"), ("failed", "upstream_unreachable")]
    finally:
        await untrusting.close()
        shutil.rmtree(root, ignore_errors=True)


# -- sockets and executions ----------------------------------------------------------------------


async def test_a_socket_is_alone_in_its_directory_and_open_to_the_task_user(gateway: EgressGateway) -> None:
    lease = await gateway.open_socket()
    assert os.listdir(lease.host_dir) == [SOCKET_NAME]
    assert lease.socket_path == lease.host_dir / SOCKET_NAME
    assert len(lease.host_dir.name) == 16 and int(lease.host_dir.name, 16) >= 0
    directory = os.stat(lease.host_dir)
    socket = os.stat(lease.socket_path)
    assert stat.S_IMODE(directory.st_mode) == 0o755 and directory.st_uid == os.getuid()
    assert stat.S_ISSOCK(socket.st_mode) and stat.S_IMODE(socket.st_mode) == 0o666
    other = await gateway.open_socket()
    assert other.host_dir != lease.host_dir
    assert await gateway.release(lease) == []
    assert not lease.host_dir.exists()
    assert other.socket_path.exists()


async def test_an_unbound_socket_refuses_and_records_nothing(
        gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    lease = await gateway.open_socket()
    status, _, body = await raw(lease, get("/x"))
    assert (status, problem_type(body)) == (503, "not_bound")
    hits: list[str] = []
    gateway.bind(lease, "exe-1", AGENT, policy(upstream), hits.append)  # the claim
    assert (await raw(lease, get("/x")))[0] == 200
    records = await gateway.release(lease)
    assert [(entry.seq, entry.path, entry.outcome) for entry in records] == [(1, "/x", "forwarded")]
    assert len(upstream.seen) == 1


async def test_two_tasks_keep_their_own_records(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    first = await bind(gateway, policy(upstream), "exe-a")
    only_plain = EgressPolicy((Upstream("plain", upstream.base + "/open", ("GET",)),), EgressLimits(5, 0, 10**6, 30))
    second = await bind(gateway, only_plain, "exe-b")
    assert (await raw(first.lease, get("/one")))[0] == 200
    assert (await raw(second.lease, get("/two")))[0] == 403  # models is the first task's upstream, not this one's
    assert (await raw(second.lease, get("/three", host="plain")))[0] == 200
    assert (await raw(first.lease, get("/four")))[0] == 200
    first_records = await gateway.release(first.lease)
    second_records = await gateway.release(second.lease)
    assert [(entry.seq, entry.path) for entry in first_records] == [(1, "/one"), (2, "/four")]
    assert [(entry.seq, entry.path, entry.outcome) for entry in second_records] == [
        (1, "/two", "refused"), (2, "/three", "forwarded")]
    assert [seen.headers.get("authorization") for seen in upstream.seen] == [[f"Bearer {SECRET}"], None,
                                                                              [f"Bearer {SECRET}"]]


async def test_release_ends_requests_in_flight_and_removes_the_directory(
        gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream))
    async with client(bound.lease) as session:
        async def call_slow() -> int:
            async with session.get("http://models/slow") as answer:
                return answer.status

        pending = asyncio.create_task(call_slow())
        await upstream.slow_started.wait()
        records = await gateway.release(bound.lease)
        with pytest.raises(aiohttp.ClientError):
            await pending
    assert [(entry.path, entry.status, entry.outcome, entry.reason) for entry in records] == [
        ("/slow", 0, "failed", "released")]
    await upstream.slow_ended.wait()  # the upstream request was ended too
    assert not bound.lease.host_dir.exists()
    assert await gateway.release(bound.lease) == records  # idempotent
    with pytest.raises(RuntimeError):
        gateway.bind(bound.lease, "exe-2", AGENT, policy(upstream), print)
    with pytest.raises(FileNotFoundError):
        await raw(bound.lease, get("/x"))


async def test_a_socket_is_bound_once(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream))
    with pytest.raises(RuntimeError):
        gateway.bind(bound.lease, "exe-2", AGENT, policy(upstream), print)


def test_a_root_too_long_for_a_socket_path_is_refused_at_once() -> None:
    async def reveal(agent_id: uuid.UUID, name: str) -> str | None:
        return None

    with pytest.raises(ConfigurationError, match="EXECUTOR_EGRESS_DIR"):
        EgressGateway(Path("/" + "d" * 80), ca_file=None, reveal=reveal)
    EgressGateway(Path("/" + "d" * 77), ca_file=None, reveal=reveal)  # 78 + 29 = 107 bytes: fits


# -- caps ----------------------------------------------------------------------------------------


async def test_the_request_cap(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream, requests=2))
    assert (await raw(bound.lease, get("/1")))[0] == 200
    assert (await raw(bound.lease, get("/2", host="nope")))[0] == 403  # a refused request counts too
    status, _, body = await raw(bound.lease, get("/3"))
    assert (status, problem_type(body)) == (429, "limit_requests")
    assert (await raw(bound.lease, get("/4")))[0] == 429
    assert bound.limits_hit == ["egress_requests_exceeded"]
    records = await gateway.release(bound.lease)
    assert [(entry.path, entry.outcome, entry.reason) for entry in records] == [
        ("/1", "forwarded", None), ("/2", "refused", "undeclared_upstream"), ("/3", "refused", "limit_requests")]
    assert len(upstream.seen) == 1


async def test_the_bytes_out_cap_on_a_declared_length(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream, bytes_out=1000))
    async with client(bound.lease) as session:
        async with session.post("http://models/a", data=b"a" * 600) as answer:
            assert answer.status == 200
        async with session.post("http://models/b", data=b"b" * 600) as answer:
            assert answer.status == 413
            assert problem_type(await answer.read()) == "limit_bytes_out"
        async with session.get("http://models/c") as answer:
            assert answer.status == 429
    assert bound.limits_hit == ["egress_bytes_exceeded"]
    records = await gateway.release(bound.lease)
    assert [(entry.path, entry.bytes_out, entry.reason) for entry in records] == [
        ("/a", 600, None), ("/b", 0, "limit_bytes_out")]
    assert [seen.path_qs for seen in upstream.seen] == ["/v1/a"]


async def test_the_bytes_out_cap_on_a_streamed_body(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream, bytes_out=10_000))

    async def chunks() -> Any:
        for _ in range(40):
            yield b"z" * 1000

    async with client(bound.lease) as session:
        try:
            async with session.post("http://models/chat", data=chunks()) as answer:
                assert answer.status == 413
                assert problem_type(await answer.read()) == "limit_bytes_out"
        except aiohttp.ClientError:
            pass  # the gateway may close before the task has written its whole body
    assert bound.limits_hit == ["egress_bytes_exceeded"]
    [entry] = await gateway.release(bound.lease)
    assert (entry.outcome, entry.reason) == ("failed", "limit_bytes_out")
    assert entry.bytes_out <= 10_000
    assert all(seen.body <= 10_000 for seen in upstream.seen)


async def test_the_bytes_in_cap_on_a_declared_length(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream, bytes_in=1500))
    async with client(bound.lease) as session:
        async with session.get("http://models/sized?n=1000") as answer:
            assert len(await answer.read()) == 1000
        async with session.get("http://models/sized?n=1000") as answer:
            assert answer.status == 502
            assert problem_type(await answer.read()) == "limit_bytes_in"
    assert bound.limits_hit == ["egress_bytes_exceeded"]
    records = await gateway.release(bound.lease)
    assert [(entry.status, entry.bytes_in, entry.outcome, entry.reason) for entry in records] == [
        (200, 1000, "forwarded", None), (502, 0, "failed", "limit_bytes_in")]


async def test_the_bytes_in_cap_cuts_a_streamed_answer(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream, bytes_in=10_000))
    async with client(bound.lease) as session:
        async with session.get("http://models/streamed?chunks=200") as answer:
            assert answer.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await answer.read()  # cut: never passes for a whole answer
        async with session.get("http://models/x") as answer:
            assert answer.status == 429
    assert bound.limits_hit == ["egress_bytes_exceeded"]
    [entry] = await gateway.release(bound.lease)
    assert (entry.status, entry.outcome, entry.reason) == (200, "failed", "limit_bytes_in")
    assert entry.bytes_in <= 10_000


async def test_the_time_cap(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream, time_s=0.2))
    status, _, body = await raw(bound.lease, get("/slow"))
    assert (status, problem_type(body)) == (504, "limit_time")
    await upstream.slow_ended.wait()  # the upstream request was abandoned
    assert (await raw(bound.lease, get("/x")))[0] == 429
    assert bound.limits_hit == ["egress_time_exceeded"]
    [entry] = await gateway.release(bound.lease)
    assert (entry.path, entry.status, entry.outcome, entry.reason) == ("/slow", 504, "failed", "limit_time")


async def test_the_time_cap_cuts_an_answer_under_way(gateway: EgressGateway, upstream: LoopbackUpstream) -> None:
    bound = await bind(gateway, policy(upstream, time_s=0.2))
    async with client(bound.lease) as session, session.get("http://models/trickle") as answer:
        assert answer.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await answer.read()
    await upstream.slow_ended.wait()
    assert bound.limits_hit == ["egress_time_exceeded"]
    [entry] = await gateway.release(bound.lease)
    assert (entry.status, entry.bytes_in, entry.outcome, entry.reason) == (200, 10, "failed", "limit_time")


async def test_too_many_requests_at_once(upstream: LoopbackUpstream, ca_file: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="eg-", dir="/tmp"))

    async def reveal(agent_id: uuid.UUID, name: str) -> str | None:
        return SECRET

    narrow = EgressGateway(root / "s", ca_file=ca_file, reveal=reveal, max_in_flight=1)
    await narrow.start()
    try:
        bound = await bind(narrow, policy(upstream))
        async with client(bound.lease) as session:
            slow = asyncio.create_task(session.get("http://models/slow"))
            await upstream.slow_started.wait()
            status, _, body = await raw(bound.lease, get("/x"))
            assert (status, problem_type(body)) == (429, "too_many_in_flight")
            records = await narrow.release(bound.lease)
            with pytest.raises(aiohttp.ClientError):
                await slow
        assert [(entry.path, entry.reason) for entry in records] == [("/slow", "released"),
                                                                       ("/x", "too_many_in_flight")]
        assert bound.limits_hit == []  # not a cap of the task: it is not ended for it
    finally:
        await narrow.close()
        shutil.rmtree(root, ignore_errors=True)


async def test_nothing_logs_a_secret_or_a_header_value(gateway: EgressGateway, upstream: LoopbackUpstream,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bound = await bind(gateway, policy(upstream, requests=3))
    assert (await raw(bound.lease, get("/x", extra="X-Private: hush-hush\r\n")))[0] == 200
    assert (await raw(bound.lease, b"GET /x HTTP/1.1\r\nHost: models\r\nX-Private: hush\x01hush\r\n\r\n"))[0] == 400
    assert (await raw(bound.lease, get("/y", host="hush-host")))[0] == 403
    assert (await raw(bound.lease, get("/z")))[0] == 200
    assert (await raw(bound.lease, get("/z")))[0] == 429
    await gateway.release(bound.lease)
    assert "hush" not in caplog.text
    assert SECRET not in caplog.text
    assert any(record.name.startswith("executor.egress") for record in caplog.records)


async def test_a_host_the_operator_no_longer_allows_is_refused(ca_file: Path, upstream: LoopbackUpstream) -> None:
    """The allow-list is checked at each request too: narrowed after a version declared a host,
    that version's requests to it are refused (and recorded), not forwarded."""
    root = Path(tempfile.mkdtemp(prefix="eg-", dir="/tmp"))
    allowed = {"localhost"}
    gateway = EgressGateway(root / "s", ca_file=ca_file, reveal=_no_secret, host_allowed=allowed.__contains__)
    await gateway.start()
    try:
        bound = await bind(gateway, policy(upstream))
        async with client(bound.lease) as session:
            async with session.get("http://plain/x") as answer:
                assert answer.status == 200
            allowed.clear()  # the operator narrows the list
            async with session.get("http://plain/x") as answer:
                assert answer.status == 403 and (await answer.json())["type"].endswith("host_not_allowed")
        records = await gateway.release(bound.lease)
        assert [(r.outcome, r.reason) for r in records] == [("forwarded", None), ("refused", "host_not_allowed")]
        assert len(upstream.seen) == 1
    finally:
        await gateway.close()
        shutil.rmtree(root, ignore_errors=True)


async def test_a_start_clears_the_socket_directories_a_crash_left(ca_file: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="eg-", dir="/tmp"))
    (root / "s" / "0123456789abcdef").mkdir(parents=True)
    (root / "s" / "0123456789abcdef" / "egress.sock").write_text("")
    (root / "s" / "kept-not-a-lease").mkdir()
    gateway = EgressGateway(root / "s", ca_file=ca_file, reveal=_no_secret)
    await gateway.start()
    try:
        assert sorted(p.name for p in (root / "s").iterdir()) == ["kept-not-a-lease"]
        lease = await gateway.open_socket()
        assert sorted(p.name for p in lease.host_dir.iterdir()) == ["egress.sock"]
    finally:
        await gateway.close()
        shutil.rmtree(root, ignore_errors=True)


async def _no_secret(agent_id: uuid.UUID, name: str) -> str | None:
    return None
