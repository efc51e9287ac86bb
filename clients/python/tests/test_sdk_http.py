"""The client's HTTP behaviour against httpx.MockTransport (the one place a mock stands in for the
service): retries and Retry-After, Idempotency-Keys, error mapping, pagination, run(), events()."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from executor_client import (
    ApiError,
    AsyncExecutor,
    EntitlementUsedUp,
    Executor,
    Forbidden,
    InputInvalid,
    NetworkError,
    RateLimited,
    RequestTimeout,
    RetryPolicy,
    RunTimeout,
)
from executor_client._common import parse_retry_after

Handler = Callable[[httpx.Request], httpx.Response]


def problem(status: int, slug: str, detail: str = "no", headers: dict[str, str] | None = None,
            **extra: Any) -> httpx.Response:
    body = {"type": f"urn:executor:problem:{slug}", "title": slug, "status": status, "detail": detail, **extra}
    return httpx.Response(status, json=body, headers={"Content-Type": "application/problem+json", **(headers or {})})


class Script:
    """Answers in order (the last one repeats); keeps every request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    def sync(self, **kwargs: Any) -> Executor:
        return Executor("http://executor.test/", "tok-a", transport=httpx.MockTransport(self), **kwargs)

    def asynchronous(self, **kwargs: Any) -> AsyncExecutor:
        return AsyncExecutor("http://executor.test", "tok-a", transport=httpx.MockTransport(self), **kwargs)


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the sync client waited (not waited for real)."""
    delays: list[float] = []
    monkeypatch.setattr("executor_client._transport.time.sleep", delays.append)
    return delays


RECORD = {"id": "e1", "status": "COMPLETED", "output": {"n": 1}}


# --- retries --------------------------------------------------------------------------------------


def test_5xx_and_429_are_retried_with_backoff_then_answer(slept: list[float]) -> None:
    script = Script(httpx.Response(503), httpx.Response(502), httpx.Response(200, json=RECORD))
    assert script.sync().execution("e1") == RECORD
    assert len(script.requests) == 3 and len(slept) == 2
    assert 0.25 <= slept[0] <= 0.5 and 0.5 <= slept[1] <= 1.0  # exponential, with jitter


def test_after_the_last_try_the_typed_error(slept: list[float]) -> None:
    script = Script(problem(429, "rate_limited", headers={"Retry-After": "7"}))
    with pytest.raises(RateLimited) as caught:
        script.sync(max_retries=3).execution("e1")
    assert caught.value.retry_after == 7.0 and caught.value.status == 429
    assert len(script.requests) == 4 and slept == [7.0, 7.0, 7.0]


def test_retry_after_is_honoured_and_capped(slept: list[float]) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    script = Script(problem(503, "queue_unavailable", headers={"Retry-After": later}),
                    problem(429, "rate_limited", headers={"Retry-After": "3600"}), httpx.Response(200, json=RECORD))
    script.sync().execution("e1")
    assert 27 <= slept[0] <= 30 and slept[1] == 60.0


def test_max_retries_zero_raises_at_once(slept: list[float]) -> None:
    script = Script(problem(429, "rate_limited", headers={"Retry-After": "2"}))
    with pytest.raises(RateLimited) as caught:
        script.sync(max_retries=0).execution("e1")
    assert caught.value.retry_after == 2.0 and len(script.requests) == 1 and slept == []


def test_other_4xx_are_never_retried(slept: list[float]) -> None:
    script = Script(problem(403, "entitlement_used_up", "no uses left"))
    with pytest.raises(EntitlementUsedUp):
        script.sync().submit("agent", {})
    assert len(script.requests) == 1


def test_network_errors_are_retried_then_wrapped(slept: list[float]) -> None:
    script = Script(httpx.ConnectError("refused"), httpx.RemoteProtocolError("closed"),
                    httpx.Response(200, json=RECORD))
    assert script.sync().execution("e1") == RECORD
    with pytest.raises(NetworkError, match="ReadError"):
        Script(httpx.ReadError("reset")).sync().execution("e1")
    with pytest.raises(RequestTimeout):
        Script(httpx.ReadTimeout("slow")).sync(max_retries=1).execution("e1")


def test_a_post_with_an_idempotency_key_is_retried_with_the_same_key(slept: list[float]) -> None:
    script = Script(httpx.RemoteProtocolError("closed before the answer"), httpx.Response(503),
                    httpx.Response(201, json=RECORD))
    script.sync().submit("agent", {"x": 1})
    keys = {request.headers["Idempotency-Key"] for request in script.requests}
    assert len(script.requests) == 3 and len(keys) == 1
    script.sync().submit("agent", {"x": 1}, idempotency_key="mine")
    assert script.requests[-1].headers["Idempotency-Key"] == "mine"
    script.sync().submit("agent", {"x": 1})
    assert script.requests[-1].headers["Idempotency-Key"] not in keys | {"mine"}  # a new call, a new key


def test_a_conflict_on_a_retry_of_a_keyed_post_is_waited_out(slept: list[float]) -> None:
    """409 `conflict` answers a key whose first request is still being answered (the answer to
    it was lost): a retry asks again. The first request's own 409 is the caller's to see."""
    script = Script(httpx.RemoteProtocolError("closed before the answer"), problem(409, "conflict"),
                    httpx.Response(201, json=RECORD))
    assert script.sync().submit("agent", {"x": 1}) == RECORD
    assert len(script.requests) == 3 and len({r.headers["Idempotency-Key"] for r in script.requests}) == 1
    script = Script(problem(409, "conflict"), httpx.Response(201, json=RECORD))
    with pytest.raises(ApiError) as caught:
        script.sync().submit("agent", {"x": 1})
    assert caught.value.status == 409 and len(script.requests) == 1


def test_a_post_without_a_key_is_not_retried(slept: list[float]) -> None:
    script = Script(httpx.Response(503), httpx.Response(200, json=RECORD))
    with pytest.raises(ApiError) as caught:
        script.sync().cancel("e1")
    assert caught.value.status == 503 and len(script.requests) == 1
    script = Script(httpx.RemoteProtocolError("closed"), httpx.Response(200, json=RECORD))
    with pytest.raises(NetworkError):
        script.sync().rotate_webhook_secret()
    assert "Idempotency-Key" not in script.requests[0].headers


def test_put_and_delete_are_retried(slept: list[float]) -> None:
    script = Script(httpx.Response(500), httpx.Response(200, json={"id": "g"}))
    assert script.sync().grant("bob", "agent")["id"] == "g"
    script = Script(httpx.ConnectError("x"), httpx.Response(200, json={"id": "t"}))
    assert script.sync().revoke_token("t")["id"] == "t"


def test_a_batch_gives_every_item_a_key_and_is_retried(slept: list[float]) -> None:
    script = Script(httpx.Response(502), httpx.Response(200, json={"items": []}))
    script.sync().submit_batch([{"agent_id": "a", "input": 1}, {"agent_id": "a", "input": 2, "idempotency_key": "k"}])
    bodies = [json.loads(request.content) for request in script.requests]
    assert bodies[0] == bodies[1] and bodies[0]["items"][1]["idempotency_key"] == "k"
    assert len(bodies[0]["items"][0]["idempotency_key"]) == 36


def test_parse_retry_after() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_retry_after("5") == 5.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Tue, 01 Jan 2030 00:00:10 GMT", now=now) == 10.0
    assert parse_retry_after("Mon, 31 Dec 2029 23:00:00 GMT", now=now) == 0.0
    assert RetryPolicy().delay(0, 1000.0) == 60.0


# --- errors ---------------------------------------------------------------------------------------


def test_a_problem_becomes_its_typed_error() -> None:
    violations = [{"pointer": "/input/text", "detail": "required"}]
    with pytest.raises(InputInvalid) as caught:
        Script(problem(422, "input_invalid", "the input breaks the schema", errors=violations)).sync().submit("a", {})
    error = caught.value
    assert (error.status, error.slug, error.type) == (422, "input_invalid", "urn:executor:problem:input_invalid")
    assert error.detail == "the input breaks the schema" and error.errors == violations
    assert error.retry_after is None and "422 input_invalid" in str(error)
    with pytest.raises(Forbidden):
        Script(problem(403, "forbidden")).sync().agent("x")


def test_an_unknown_slug_or_a_non_json_body_is_an_api_error() -> None:
    with pytest.raises(ApiError) as caught:
        Script(problem(409, "something_new")).sync().agent("x")
    assert type(caught.value) is ApiError and caught.value.slug == "something_new"
    with pytest.raises(ApiError) as caught:
        Script(httpx.Response(404, text="<html>Not Found</html>")).sync().agent("x")
    assert (caught.value.status, caught.value.type, caught.value.slug) == (404, None, None)
    assert caught.value.detail == "<html>Not Found</html>" and caught.value.problem["title"] == "Not Found"


def test_readiness_503_is_an_answer() -> None:
    body = {"status": "unavailable", "checks": {"postgresql": "ok", "redis": "down", "docker": "ok"}}
    script = Script(httpx.Response(503, json=body))
    assert script.sync().readiness() == body and len(script.requests) == 1


# --- requests -------------------------------------------------------------------------------------


def test_submit_sends_the_body_exactly() -> None:
    script = Script(httpx.Response(202, json=RECORD))
    script.sync().submit("agent-1", {"text": "hi"}, version=2, limits={"timeout_s": 5}, wait=2.5)
    sent = script.requests[0]
    assert (sent.method, sent.url.path, dict(sent.url.params)) == ("POST", "/v1/executions", {"wait": "2.5"})
    assert json.loads(sent.content) == {"agent_id": "agent-1", "input": {"text": "hi"}, "version": 2,
                                        "limits": {"timeout_s": 5}}
    assert sent.headers["Authorization"] == "Bearer tok-a" and sent.headers["Content-Type"] == "application/json"
    script.sync().submit("agent-1", [1, 2])
    assert json.loads(script.requests[-1].content) == {"agent_id": "agent-1", "input": [1, 2]}
    assert "wait" not in script.requests[-1].url.params


def test_path_ids_are_one_segment_and_datetimes_rfc3339() -> None:
    script = Script(httpx.Response(200, json={"items": [], "next_cursor": None}))
    list(script.sync().versions("a/b"))
    assert script.requests[0].url.raw_path.startswith(b"/v1/agents/a%2Fb/versions")
    at = datetime(2027, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    script.sync().grant("bob", "agent", uses=5, expires_at=at)
    assert json.loads(script.requests[-1].content) == {"user": "bob", "agent_id": "agent", "uses": 5,
                                                       "expires_at": "2027-01-02T01:04:05Z"}
    with pytest.raises(ValueError, match="timezone-aware"):
        script.sync().grant("bob", "agent", expires_at=datetime(2027, 1, 2))


def test_with_token_shares_the_connections() -> None:
    script = Script(httpx.Response(200, json={"status": "ok"}))
    with script.sync() as api:
        other = api.with_token("tok-b")
        other.health()
        api.health()
        anonymous = api.with_token(None)
        anonymous.health()
        assert other._transport is api._transport
    assert [r.headers.get("Authorization") for r in script.requests] == ["Bearer tok-b", "Bearer tok-a", None]


# --- pagination, run, events ----------------------------------------------------------------------


def pages(request: httpx.Request) -> httpx.Response:
    """Five items, `limit` a page, the cursor the next offset."""
    limit, offset = int(request.url.params["limit"]), int(request.url.params.get("cursor", "0"))
    items = [{"id": str(i)} for i in range(offset, min(5, offset + limit))]
    following = str(offset + limit) if offset + limit < 5 else None
    return httpx.Response(200, json={"items": items, "next_cursor": following})


@pytest.mark.parametrize("name", ["executions", "agents", "tokens", "images", "entitlements"])
def test_iterators_follow_next_cursor(name: str) -> None:
    script = Script(pages)
    assert [item["id"] for item in getattr(script.sync(), name)(page_size=2)] == ["0", "1", "2", "3", "4"]
    assert [dict(r.url.params) for r in script.requests] == [{"limit": "2"}, {"limit": "2", "cursor": "2"},
                                                             {"limit": "2", "cursor": "4"}]


async def test_async_iterators_follow_next_cursor() -> None:
    script = Script(pages)
    async with script.asynchronous() as api:
        assert [d["id"] async for d in api.webhook_deliveries("e1", page_size=3)] == ["0", "1", "2", "3", "4"]
        assert [v["id"] async for v in api.versions("a", page_size=5)] == ["0", "1", "2", "3", "4"]
        assert [e["id"] async for e in api.entitlements(user="bob", page_size=4)] == ["0", "1", "2", "3", "4"]
    assert script.requests[-1].url.params["user"] == "bob"


def polls(statuses: list[str]) -> Handler:
    def answer(request: httpx.Request) -> httpx.Response:
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return httpx.Response(202 if request.method == "POST" else 200, json={"id": "e1", "status": status})
    return answer


def test_run_waits_until_final() -> None:
    script = Script(polls(["PENDING", "RUNNING", "COMPLETED"]))
    assert script.sync().run("agent", {}, timeout=30)["status"] == "COMPLETED"
    assert [(r.method, r.url.path) for r in script.requests] == [("POST", "/v1/executions")] + \
        [("GET", "/v1/executions/e1")] * 2
    assert all(0 < float(r.url.params["wait"]) <= 30 for r in script.requests)


async def test_run_gives_up_after_its_timeout() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            import time
            time.sleep(0.2)
        return polls(["PENDING"])(request)

    script = Script(slow)
    with pytest.raises(RunTimeout) as caught:
        await script.asynchronous().run("agent", {}, timeout=0.3)
    assert caught.value.execution["status"] == "PENDING" and isinstance(caught.value, TimeoutError)


SSE = (b'id: 1\nevent: status\ndata: {"id":"e1","status":"PENDING"}\n\n: keepalive\n\n'
       b'id: 2\nevent: status\ndata: {"id":"e1","status":"RUNNING"}\n\n'
       b'id: 3\nevent: final\ndata: {"id":"e1","status":"COMPLETED","output":{"n":1}}\n\n')


def test_events_are_parsed_and_end_at_final() -> None:
    script = Script(httpx.Response(200, content=SSE, headers={"Content-Type": "text/event-stream"}))
    events = list(script.sync().events("e1"))
    assert [(e.id, e.event, e.data["status"]) for e in events] == [("1", "status", "PENDING"),
                                                                   ("2", "status", "RUNNING"),
                                                                   ("3", "final", "COMPLETED")]


async def test_a_broken_event_stream_resumes_from_the_last_id(monkeypatch: pytest.MonkeyPatch) -> None:
    half = SSE[:SSE.index(b"id: 2")]
    script = Script(httpx.Response(200, content=half), httpx.Response(200, content=SSE[SSE.index(b"id: 3"):]))

    async def no_wait(seconds: float) -> None:
        return None

    async with script.asynchronous() as api:
        monkeypatch.setattr(api._transport, "sleep", no_wait)
        events = [event async for event in api.events("e1")]
    assert [e.event for e in events] == ["status", "final"]
    assert script.requests[1].headers["Last-Event-ID"] == "1"
    with pytest.raises(ApiError):
        [event async for event in Script(problem(404, "not_found")).asynchronous().events("nope")]


# --- threads and event loops ----------------------------------------------------------------------


def test_one_sync_client_from_threads_and_event_loops() -> None:
    script = Script(httpx.Response(200, json={"status": "ok"}))
    api = script.sync()
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(api.health())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def inside() -> Any:
        return api.health()

    results += [asyncio.run(inside()), asyncio.run(inside())]
    assert results == [{"status": "ok"}] * 10
    api.close()


def test_one_async_client_across_event_loops() -> None:
    script = Script(httpx.Response(200, json={"status": "ok"}))
    api = script.asynchronous()
    clients: list[Any] = []

    async def use() -> Any:
        answer = await api.health()
        clients.append(api._transport.client())
        return answer

    assert asyncio.run(use()) == asyncio.run(use()) == {"status": "ok"}
    assert clients[0] is not clients[1]  # one httpx.AsyncClient per loop
    asyncio.run(api.aclose())
    assert len(api._transport._clients) == 0
