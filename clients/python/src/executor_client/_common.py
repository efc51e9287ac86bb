"""What the sync and the async client share, with no I/O: building a request from the route table,
the retry policy, turning an answer into a value or an error, and reading Server-Sent Events."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from executor_client._routes import ROUTES
from executor_client.errors import ApiError, NetworkError, RequestTimeout, UnexpectedResponse
from executor_client.problems import PROBLEM_CLASSES

VERSION = "0.1.0"
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"})
MAX_WAIT_S = 60.0  # the longest ?wait= the service takes by default (EXECUTOR_MAX_WAIT_S)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "DELETE", "PUT"})  # retried always; POST only with an Idempotency-Key
NO_BODY: Any = object()


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. The n-th retry (from 0) waits `Retry-After` when the answer
    has one (capped at `retry_after_cap_s`), else backoff_base_s·2^n (at most backoff_max_s), with
    full jitter down to half of it."""

    max_retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_cap_s: float = 60.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(0.0, retry_after), self.retry_after_cap_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2**retry)
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Config:
    """A client's settings, shared with its `with_token` copies."""

    base_url: str
    timeout: float
    retry: RetryPolicy
    headers: dict[str, str] = field(default_factory=dict)

    def call(self, operation: str, *, token: str | None, path: Mapping[str, str | int] | None = None,
             query: Mapping[str, object] | None = None, json: Any = NO_BODY, content: bytes | None = None,
             content_type: str | None = None, idempotency_key: str | None = None, timeout: float | None = None,
             extra_timeout: float = 0.0, headers: Mapping[str, str] | None = None, retry_safe: bool = False,
             ok: frozenset[int] = frozenset()) -> Call:
        """The request of one operation (ROUTES, generated from the contract). An operation that takes an
        Idempotency-Key gets one (a uuid4) unless the caller gives it: every retry sends the same."""
        route = ROUTES[operation]
        target = route.path.format(**{name: quote(str(value), safe="") for name, value in (path or {}).items()})
        sent = {"User-Agent": f"executor-client-python/{VERSION}", "Accept": "application/json", **self.headers,
                **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if route.idempotency_key:
            sent["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        elif idempotency_key is not None:
            raise TypeError(f"{operation} takes no Idempotency-Key")
        body: bytes | None = None
        if json is not NO_BODY:
            body = dumps(json)
            sent["Content-Type"] = "application/json"
        elif content is not None:
            body = content
            sent["Content-Type"] = content_type or "application/octet-stream"
        params = {name: _param(value) for name, value in (query or {}).items() if value is not None}
        safe = route.method in SAFE_METHODS or "Idempotency-Key" in sent or retry_safe
        return Call(operation, route.method, self.base_url + target, params, sent, body,
                    (self.timeout if timeout is None else timeout) + extra_timeout, safe, ok)


@dataclass(frozen=True)
class Call:
    operation: str
    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    content: bytes | None
    timeout: float
    retry_safe: bool  # may be sent again after a failure (its method, or its Idempotency-Key)
    ok: frozenset[int]  # non-2xx statuses that are an answer, not an error (503 of /readyz)

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        return client.build_request(self.method, self.url, params=self.params, headers=self.headers,
                                    content=self.content, timeout=self.timeout)


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _param(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def is_error(call: Call, response: httpx.Response) -> bool:
    return response.status_code >= 400 and response.status_code not in call.ok


def retry_delay(call: Call, policy: RetryPolicy, retry: int, *, response: httpx.Response | None = None,
                exc: Exception | None = None) -> float | None:
    """Seconds to wait before retry number `retry` (from 0), or None when this failure is final."""
    if retry >= policy.max_retries or not call.retry_safe:
        return None
    if exc is not None:
        return policy.delay(retry, None) if is_retryable_exception(exc) else None
    assert response is not None
    if response.status_code in call.ok:
        return None
    # A retry's 409 under the same Idempotency-Key: the first attempt is still being answered
    # (docs/idempotency.md), so asking again soon gets its answer.
    in_flight = response.status_code == 409 and retry > 0 and "Idempotency-Key" in call.headers
    if response.status_code not in RETRY_STATUSES and not in_flight:
        return None
    return policy.delay(retry, parse_retry_after(response.headers.get("Retry-After")))


def is_retryable_exception(exc: Exception) -> bool:
    """No answer came, and sending again may get one: connect, read, write, timeouts, a closed connection."""
    return isinstance(exc, httpx.NetworkError | httpx.TimeoutException | httpx.RemoteProtocolError)


def wrap_transport_error(exc: httpx.TransportError, call: Call) -> NetworkError:
    kind = RequestTimeout if isinstance(exc, httpx.TimeoutException) else NetworkError
    return kind(f"{call.method} {call.url}: {type(exc).__name__}: {exc}")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_for(response: httpx.Response) -> ApiError:
    """The typed error of a non-2xx answer: the class of its problem slug, else ApiError."""
    try:
        data = json.loads(response.content) if response.content.strip() else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        problem: dict[str, Any] = data
    else:
        problem = {"title": response.reason_phrase, "status": response.status_code,
                   "detail": response.text}
    error = ApiError(response.status_code, problem)
    kind = PROBLEM_CLASSES.get(error.slug or "", ApiError)
    return kind(response.status_code, problem, retry_after=parse_retry_after(response.headers.get("Retry-After")),
                headers=dict(response.headers))


def decode_json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        raise UnexpectedResponse(f"expected JSON, got {response.content[:200]!r}", status=response.status_code,
                                 body=response.content) from None


def rfc3339(value: datetime | str | None) -> str | None:
    """A timezone-aware datetime as RFC 3339 in UTC with `Z`; a string passes as it is."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a datetime must be timezone-aware (a naive one names no instant)")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def without_none(**values: object) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of GET /v1/executions/{id}/events: `event` is "status" (data: id, status,
    error, started_at, finished_at), "stderr" (data: {line, seq}, one line of the task's stderr, or
    {dropped}) or "final" (data: the whole Execution); `id` its number."""

    event: str
    data: Any
    id: str | None = None


class SseParser:
    """Lines of a text/event-stream in, events out (the WHATWG rules this API uses: id, event, data)."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                self._event = ""
                return None
            text = "\n".join(self._data)
            try:
                data: Any = json.loads(text)
            except ValueError:
                data = text
            event = Event(self._event or "message", data, self._id)
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            return None  # a comment (keepalive)
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None
