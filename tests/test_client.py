"""executor.client without an executor: webhook signatures against the outside reference
(standardwebhooks), and the request/response plumbing against a tiny local aiohttp app
that mimics the API's contract."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import nacl.signing
import pytest
import standardwebhooks
from aiohttp import web

from executor.client import (
    ApiError,
    ExecutorClient,
    WebhookVerificationError,
    verify_webhook,
)
from executor.embedded import free_port
from executor.receipts.jwk import key_id, to_jwk
from tests.receipts.test_verify import T0, Log

# --- webhooks -------------------------------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
SENT_AT = 1_800_000_000
BODY = json.dumps({"type": "execution.completed", "data": {"id": "e1", "status": "COMPLETED"}}).encode()


def signed(body: bytes = BODY, *, secret: str = SECRET, msg_id: str = "msg_1", at: int = SENT_AT) -> dict[str, str]:
    signature = standardwebhooks.Webhook(secret).sign(msg_id, datetime.fromtimestamp(at, tz=UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}


def test_webhook_signed_by_the_reference_verifies() -> None:
    assert verify_webhook(SECRET, signed(), BODY, now=SENT_AT + 10) == json.loads(BODY)


def test_webhook_reference_also_accepts_what_passes_here() -> None:
    # The same delivery, checked by the reference at the current time: both sides agree on the format.
    headers = signed(at=int(datetime.now(UTC).timestamp()))
    assert standardwebhooks.Webhook(SECRET).verify(BODY, headers) == verify_webhook(SECRET, headers, BODY)


def test_webhook_headers_in_any_case() -> None:
    headers = {name.upper() if i % 2 else name.title(): value for i, (name, value) in enumerate(signed().items())}
    assert verify_webhook(SECRET, headers, BODY, now=SENT_AT) == json.loads(BODY)


def test_webhook_one_of_several_signatures_matching_is_enough() -> None:
    headers = signed()
    other = signed(secret="whsec_" + base64.b64encode(b"another key, rotated").decode())["webhook-signature"]
    wrong = f"v1,{base64.b64encode(b'x' * 32).decode()}"
    headers["webhook-signature"] = f"{wrong} {other} v2,abc {headers['webhook-signature']}"
    assert verify_webhook(SECRET, headers, BODY, now=SENT_AT) == json.loads(BODY)


def test_webhook_tampered_body_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        verify_webhook(SECRET, signed(), BODY.replace(b"COMPLETED", b"FAILED"), now=SENT_AT)


def test_webhook_wrong_secret_is_refused() -> None:
    wrong = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    with pytest.raises(WebhookVerificationError):
        verify_webhook(wrong, signed(), BODY, now=SENT_AT)


def test_webhook_signature_of_another_id_is_refused() -> None:
    headers = signed()
    headers["webhook-id"] = "msg_2"
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, headers, BODY, now=SENT_AT)


def test_webhook_timestamp_tolerance_both_ways() -> None:
    assert verify_webhook(SECRET, signed(), BODY, now=SENT_AT + 300) == json.loads(BODY)
    assert verify_webhook(SECRET, signed(), BODY, now=SENT_AT - 300) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError, match="past"):
        verify_webhook(SECRET, signed(), BODY, now=SENT_AT + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify_webhook(SECRET, signed(), BODY, now=SENT_AT - 301)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, signed(), BODY, now=SENT_AT + 11, tolerance_s=10)


def test_webhook_stale_by_the_clock_is_refused() -> None:
    with pytest.raises(WebhookVerificationError, match="past"):
        verify_webhook(SECRET, signed(at=int(datetime.now(UTC).timestamp()) - 3600), BODY)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_webhook_missing_header_is_refused(missing: str) -> None:
    headers = signed()
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_webhook(SECRET, headers, BODY, now=SENT_AT)


@pytest.mark.parametrize("stamp", ["", "1.8e9", "-5", "+1800000000", "1_800_000_000", "soon"])
def test_webhook_timestamp_not_whole_seconds_is_refused(stamp: str) -> None:
    headers = {**signed(), "webhook-timestamp": stamp}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, headers, BODY, now=SENT_AT)


def test_webhook_errors_are_value_errors() -> None:
    assert issubclass(WebhookVerificationError, ValueError)


# --- the client against a mimic of the API -----------------------------------------------------

SIGNING_KEY = nacl.signing.SigningKey.generate()


@dataclass
class Mimic:
    """What the fake service saw, and how it answers polls."""

    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=lambda: ["PENDING", "RUNNING", "COMPLETED"])


def problem(status: int, slug: str, detail: str, headers: dict[str, str] | None = None,
            **extra: Any) -> web.Response:
    body = {"type": f"urn:executor:problem:{slug}", "title": slug.replace("_", " ").capitalize(), "status": status,
            "detail": detail, **extra}
    return web.json_response(body, status=status, content_type="application/problem+json", headers=headers)


def mimic_app(mimic: Mimic) -> web.Application:
    routes = web.RouteTableDef()

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        mimic.requests.append({"method": request.method, "path": request.raw_path.split("?")[0],
                               "query": dict(request.query),
                               "headers": dict(request.headers), "body": json.loads(raw) if raw else None})
        return await handler(request)

    @routes.get("/v1/agents/forbidden")
    async def forbidden(request: web.Request) -> web.Response:
        return problem(403, "forbidden", "only the agent's owner may do this",
                       errors=[{"pointer": "/owner", "detail": "not you"}])

    @routes.get("/v1/agents/busy")
    async def busy(request: web.Request) -> web.Response:
        return problem(429, "rate_limited", "slow down", headers={"Retry-After": "3"})

    @routes.get("/v1/agents/upstream")
    async def upstream(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html")

    @routes.get("/v1/agents/{id}/versions")
    async def versions(request: web.Request) -> web.Response:
        return web.json_response({"items": [{"id": request.match_info["id"], "version": 1}]})

    @routes.post("/v1/executions")
    async def submit(request: web.Request) -> web.Response:
        record = {"id": "e1", "status": "PENDING", "output": None}
        return web.json_response(record, status=202, headers={"Location": "/v1/executions/e1"})

    @routes.get("/v1/executions/stuck")
    async def stuck(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("wait", "0")))
        return web.json_response({"id": "stuck", "status": "RUNNING"})

    @routes.get("/v1/executions/{id}")
    async def execution(request: web.Request) -> web.Response:
        status = mimic.statuses.pop(0) if len(mimic.statuses) > 1 else mimic.statuses[0]
        output = {"words": 3} if status == "COMPLETED" else None
        return web.json_response({"id": request.match_info["id"], "status": status, "output": output})

    @routes.put("/v1/entitlements")
    async def grant(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"id": "ent1", "state": "active", **body}, status=201)

    @routes.get("/v1/entitlements")
    async def entitlements(request: web.Request) -> web.Response:
        return web.json_response({"items": [{"id": "ent1", **request.query}]})

    @routes.get("/v1/keys")
    async def keys(request: web.Request) -> web.Response:
        return web.json_response({"keys": [to_jwk(SIGNING_KEY.verify_key)]})

    app = web.Application(middlewares=[record])
    app.add_routes(routes)
    return app


@pytest.fixture
async def mimic() -> AsyncIterator[Mimic]:
    state = Mimic()
    runner = web.AppRunner(mimic_app(state))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state.base_url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def client(mimic: Mimic) -> AsyncIterator[ExecutorClient]:
    async with ExecutorClient(mimic.base_url + "/", "tok-alice") as api:
        yield api


async def test_problem_json_becomes_api_error(client: ExecutorClient) -> None:
    with pytest.raises(ApiError) as caught:
        await client.agent("forbidden")
    error = caught.value
    assert (error.status, error.type, error.slug) == (403, "urn:executor:problem:forbidden", "forbidden")
    assert error.problem["detail"] == error.detail == "only the agent's owner may do this"
    assert error.errors == [{"pointer": "/owner", "detail": "not you"}]
    assert error.retry_after is None
    assert "403 forbidden" in str(error)


async def test_too_many_requests_carries_retry_after(client: ExecutorClient, mimic: Mimic) -> None:
    with pytest.raises(ApiError) as caught:
        await client.agent("busy")
    assert (caught.value.status, caught.value.slug, caught.value.retry_after) == (429, "rate_limited", 3.0)
    assert len(mimic.requests) == 1  # no retry of its own


async def test_non_json_error_body_is_the_detail(client: ExecutorClient) -> None:
    with pytest.raises(ApiError) as caught:
        await client.agent("upstream")
    assert (caught.value.status, caught.value.type) == (502, None)
    assert caught.value.detail == "<html>Bad Gateway</html>"
    assert caught.value.problem["title"] == "Bad Gateway"


async def test_submit_sends_the_body_exactly_and_the_idempotency_key(client: ExecutorClient, mimic: Mimic) -> None:
    record = await client.submit("agent-1", {"text": "hello wide world"}, version=2, limits={"timeout_s": 5},
                                 idempotency_key="key-123", wait_s=2.5)
    assert record == {"id": "e1", "status": "PENDING", "output": None}
    sent = mimic.requests[-1]
    assert (sent["method"], sent["path"], sent["query"]) == ("POST", "/v1/executions", {"wait": "2.5"})
    assert sent["body"] == {"agent_id": "agent-1", "input": {"text": "hello wide world"}, "version": 2,
                            "limits": {"timeout_s": 5}}
    assert sent["headers"]["Idempotency-Key"] == "key-123"
    assert sent["headers"]["Authorization"] == "Bearer tok-alice"
    assert sent["headers"]["Content-Type"].startswith("application/json")


async def test_submit_without_options_sends_neither_them_nor_a_key(client: ExecutorClient, mimic: Mimic) -> None:
    await client.submit("agent-1", [1, 2])
    sent = mimic.requests[-1]
    assert sent["body"] == {"agent_id": "agent-1", "input": [1, 2]}
    assert sent["query"] == {}
    assert "Idempotency-Key" not in sent["headers"]


async def test_run_polls_until_final(client: ExecutorClient, mimic: Mimic) -> None:
    record = await client.run("agent-1", {"text": "a b c"}, timeout_s=30)
    assert (record["status"], record["output"]) == ("COMPLETED", {"words": 3})
    polls = [r for r in mimic.requests if r["method"] == "GET"]
    assert [r["path"] for r in polls] == ["/v1/executions/e1"] * 3
    assert all(0 < float(r["query"]["wait"]) <= 30 for r in polls)
    assert float(mimic.requests[0]["query"]["wait"]) > 0  # the submit waits too


async def test_run_gives_up_after_its_timeout(client: ExecutorClient, mimic: Mimic) -> None:
    async def submitted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"id": "stuck", "status": "PENDING"}

    client.submit = submitted  # type: ignore[method-assign]
    with pytest.raises(TimeoutError):
        await client.run("agent-1", {}, timeout_s=0.5)


async def test_grant_sends_a_datetime_as_rfc3339_utc(client: ExecutorClient, mimic: Mimic) -> None:
    at = datetime(2027, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    granted = await client.grant("user:bob", "agent-1", uses=5, expires_at=at)
    assert mimic.requests[-1]["body"] == {"user": "user:bob", "agent_id": "agent-1", "uses": 5,
                                          "expires_at": "2027-01-02T01:04:05Z"}
    assert (granted["id"], granted["expires_at"]) == ("ent1", "2027-01-02T01:04:05Z")
    await client.grant("user:bob", "agent-1")
    assert mimic.requests[-1]["body"] == {"user": "user:bob", "agent_id": "agent-1", "uses": None, "expires_at": None}
    with pytest.raises(ValueError, match="timezone-aware"):
        await client.grant("user:bob", "agent-1", expires_at=datetime(2027, 1, 2))


async def test_lists_come_back_as_their_items(client: ExecutorClient, mimic: Mimic) -> None:
    assert await client.entitlements(user="user:bob") == [{"id": "ent1", "user": "user:bob"}]
    assert mimic.requests[-1]["query"] == {"user": "user:bob"}
    assert await client.versions("a/b") == [{"id": "a/b", "version": 1}]
    assert mimic.requests[-1]["path"] == "/v1/agents/a%2Fb/versions"  # an id is one path segment


async def test_keys_and_receipt_verification(client: ExecutorClient) -> None:
    keys = await client.keys()
    assert list(keys) == [key_id(SIGNING_KEY.verify_key)]
    log = Log(SIGNING_KEY)
    log.append(T0)
    bundle = log.bundle(0, log.head(T0 + timedelta(seconds=1)))
    assert (await client.verify_receipt(bundle)).valid
    pinned = {key_id(k.verify_key): k.verify_key for k in [nacl.signing.SigningKey.generate()]}
    report = await client.verify_receipt(bundle, keys=pinned)
    assert not report.valid and "unknown_key" in {f.reason for f in report.failures}


async def test_with_token_shares_the_session_and_closing_is_the_owners(mimic: Mimic) -> None:
    outer = aiohttp.ClientSession()
    try:
        async with ExecutorClient(mimic.base_url, "tok-a", session=outer) as api:
            other = api.with_token("tok-b")
            await other.versions("x")
            await api.versions("x")
            await other.close()
        assert [r["headers"]["Authorization"] for r in mimic.requests] == ["Bearer tok-b", "Bearer tok-a"]
        assert not outer.closed  # passed in: the caller's to close
    finally:
        await outer.close()
    async with ExecutorClient(mimic.base_url) as owned:  # makes its session, on first use
        shared = owned.with_token("tok-c")
        await shared.versions("x")
        await owned.versions("y")
        assert mimic.requests[-2]["headers"]["Authorization"] == "Bearer tok-c"
        assert "Authorization" not in mimic.requests[-1]["headers"]
        session = owned._transport.session
        await shared.close()
        assert session is not None and not session.closed
    assert session.closed
