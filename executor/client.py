"""A small async client for the executor HTTP API, and the check of its webhooks.

    ApiError                    the service answered with an error status (RFC 9457 problem)
    WebhookVerificationError    (a ValueError) a webhook delivery whose signature does not hold

The client never retries by itself: an `ApiError` with `status` 429 or 503 carries
`retry_after` (seconds, from `Retry-After`) and the caller decides whether to wait and
try again. The one loop is `run()`, which keeps polling an accepted execution with
`?wait=` until it is final. Keys for `verify_receipt` default to the service's own
`/v1/keys`; an outside party should pin the keys it trusts instead.

It needs only aiohttp, PyNaCl and `executor.receipts` (pure logic, no server parts).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
import nacl.signing

from executor.receipts.jwk import parse_key_set
from executor.receipts.verify import Report, verify_bundle

FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"})
MAX_WAIT_S = 60.0  # the longest ?wait= the service accepts by default
PROBLEM_TYPE_PREFIX = "urn:executor:problem:"


class ApiError(Exception):
    """A non-2xx answer. `problem` is the RFC 9457 body (or one made from a non-JSON body, its text
    in `detail`); `type` its problem type URN, or None; `retry_after` the seconds of `Retry-After`
    (429, 503), or None: the client does not retry, the caller may after that long."""

    def __init__(self, status: int, problem: dict[str, Any], *, retry_after: float | None = None) -> None:
        self.status = status
        self.problem = problem
        self.type: str | None = problem["type"] if isinstance(problem.get("type"), str) else None
        self.retry_after = retry_after
        label = self.slug or problem.get("title")
        super().__init__(f"{status} {label}: {self.detail}" if label else f"{status}: {self.detail}")

    @property
    def slug(self) -> str | None:
        """The stable part of an executor problem type (`forbidden`, `input_invalid`, …)."""
        if self.type and self.type.startswith(PROBLEM_TYPE_PREFIX):
            return self.type[len(PROBLEM_TYPE_PREFIX):]
        return None

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail") or self.problem.get("title") or "")

    @property
    def errors(self) -> list[dict[str, Any]]:
        errors = self.problem.get("errors")
        return errors if isinstance(errors, list) else []


class WebhookVerificationError(ValueError):
    """A webhook delivery that is not what its Standard Webhooks headers claim."""


@dataclass
class _Transport:
    """The session (made lazily, inside the event loop) that a client and its `with_token` copies share."""

    timeout: aiohttp.ClientTimeout
    session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=self.timeout)
        return self.session


class ExecutorClient:
    """The executor API as coroutines returning its JSON records; every error is an `ApiError`."""

    def __init__(self, base_url: str, token: str | None = None, *, session: aiohttp.ClientSession | None = None,
                 timeout_s: float = 70.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._transport = _Transport(aiohttp.ClientTimeout(total=timeout_s), session)
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client made it (not one passed in, nor a `with_token` copy's)."""
        if self._owns_session and self._transport.session is not None:
            await self._transport.session.close()

    def with_token(self, token: str) -> ExecutorClient:
        """The same service and session, another caller; closing the original closes the session."""
        other = ExecutorClient(self.base_url, token, timeout_s=self._timeout_s)
        other._transport, other._owns_session = self._transport, False
        return other

    # agents
    async def register_agent(self, **fields: Any) -> dict[str, Any]:
        return await self._json("POST", "/v1/agents", body=fields)

    async def publish_version(self, agent_id: str, **fields: Any) -> dict[str, Any]:
        return await self._json("POST", f"/v1/agents/{_seg(agent_id)}/versions", body=fields)

    async def agent(self, agent_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/agents/{_seg(agent_id)}")

    async def versions(self, agent_id: str) -> list[dict[str, Any]]:
        return _items(await self._json("GET", f"/v1/agents/{_seg(agent_id)}/versions"))

    async def deprecate_version(self, agent_id: str, version: int) -> dict[str, Any]:
        return await self._json("POST", f"/v1/agents/{_seg(agent_id)}/versions/{version}/deprecate")

    async def withdraw_version(self, agent_id: str, version: int) -> dict[str, Any]:
        return await self._json("POST", f"/v1/agents/{_seg(agent_id)}/versions/{version}/withdraw")

    async def agent_stats(self, agent_id: str) -> dict[str, Any]:
        return await self._json("GET", f"/v1/agents/{_seg(agent_id)}/stats")

    # entitlements
    async def grant(self, user: str, agent_id: str, *, uses: int | None = None,
                    expires_at: datetime | str | None = None) -> dict[str, Any]:
        """Create or replace `user`'s entitlement to `agent_id`; None for `uses` or `expires_at` means no limit.
        A datetime must be timezone-aware; it is sent as RFC 3339 in UTC with `Z`."""
        when = _rfc3339(expires_at) if isinstance(expires_at, datetime) else expires_at
        return await self._json("PUT", "/v1/entitlements",
                                body={"user": user, "agent_id": agent_id, "uses": uses, "expires_at": when})

    async def revoke(self, entitlement_id: str) -> dict[str, Any]:
        return await self._json("DELETE", f"/v1/entitlements/{_seg(entitlement_id)}")

    async def entitlements(self, *, user: str | None = None, agent_id: str | None = None) -> list[dict[str, Any]]:
        query = {name: value for name, value in (("user", user), ("agent_id", agent_id)) if value is not None}
        return _items(await self._json("GET", "/v1/entitlements", query=query))

    # executions
    async def submit(self, agent_id: str, input: Any, *, version: int | None = None,
                     limits: Mapping[str, Any] | None = None, on_behalf_of: str | None = None,
                     webhook_url: str | None = None, idempotency_key: str | None = None,
                     wait_s: float = 0) -> dict[str, Any]:
        """Start an execution; the record comes back final (201) if it was within `wait_s`, else as accepted (202)."""
        body: dict[str, Any] = {"agent_id": agent_id, "input": input}
        optional = {"version": version, "limits": dict(limits) if limits is not None else None,
                    "webhook_url": webhook_url, "on_behalf_of": on_behalf_of}
        body.update({name: value for name, value in optional.items() if value is not None})
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        return await self._json("POST", "/v1/executions", body=body, query=_wait(wait_s), headers=headers)

    async def run(self, agent_id: str, input: Any, *, timeout_s: float = 300, **submit_kwargs: Any) -> dict[str, Any]:
        """Submit, then poll `GET /v1/executions/{id}?wait=` until final; raises TimeoutError after `timeout_s`."""
        longest = max(1.0, min(MAX_WAIT_S, self._timeout_s - 5))  # each wait ends well inside a request's timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with asyncio.timeout(timeout_s):
            submit_kwargs.setdefault("wait_s", min(longest, math.ceil(timeout_s)))
            record = await self.submit(agent_id, input, **submit_kwargs)
            while record.get("status") not in FINAL_STATUSES:
                wait_s = min(longest, max(1, math.ceil(deadline - loop.time())))
                record = await self.execution(record["id"], wait_s=wait_s)
        return record

    async def execution(self, execution_id: str, *, wait_s: float = 0) -> dict[str, Any]:
        return await self._json("GET", f"/v1/executions/{_seg(execution_id)}", query=_wait(wait_s))

    async def cancel(self, execution_id: str) -> dict[str, Any]:
        return await self._json("POST", f"/v1/executions/{_seg(execution_id)}/cancel")

    async def receipt(self, execution_id: str) -> dict[str, Any]:
        """The receipt bundle of a final execution (409 `receipt_unavailable` before)."""
        return await self._json("GET", f"/v1/executions/{_seg(execution_id)}/receipt")

    async def keys(self) -> dict[str, nacl.signing.VerifyKey]:
        """The service's published signing keys by kid; raises JwkError (a ValueError) for a bad key set."""
        return parse_key_set(await self._json("GET", "/v1/keys"))

    async def verify_receipt(self, bundle: dict[str, Any], *, keys: Mapping[str, nacl.signing.VerifyKey] | None = None,
                             input_bytes: bytes | None = None, output_bytes: bytes | None = None,
                             trusted_head: Any = None) -> Report:
        """Every check of `verify_bundle` on a receipt bundle. Without `keys` they are fetched from this
        service's /v1/keys, which only shows the bundle agrees with what the service says now: an outside
        party should pin the keys it trusts (and a head it kept) and pass them instead."""
        trusted = keys if keys is not None else await self.keys()
        return verify_bundle(bundle, trusted, input_bytes=input_bytes, output_bytes=output_bytes,
                             trusted_head=trusted_head)

    # webhooks and tokens
    async def webhook_endpoint(self) -> dict[str, Any]:
        return await self._json("GET", "/v1/webhooks/endpoint")

    async def set_webhook_endpoint(self, url: str | None) -> dict[str, Any]:
        """Set (or, with None, remove) the caller's webhook URL; the answer holds the signing secret."""
        return await self._json("PUT", "/v1/webhooks/endpoint", body={"url": url})

    async def webhook_deliveries(self, execution_id: str) -> list[dict[str, Any]]:
        return _items(await self._json("GET", f"/v1/executions/{_seg(execution_id)}/webhooks"))

    async def create_token(self, role: str, subject: str, *,
                           expires_at: datetime | str | None = None) -> dict[str, Any]:
        """A new token (an operator: any role; a service: user tokens); its secret is in the answer,
        shown only once. `expires_at` (timezone-aware, in the future): refused from then on."""
        body: dict[str, Any] = {"role": role, "subject": subject}
        if expires_at is not None:
            body["expires_at"] = _rfc3339(expires_at) if isinstance(expires_at, datetime) else expires_at
        return await self._json("POST", "/v1/tokens", body=body)

    async def list_tokens(self, *, role: str | None = None, subject: str | None = None, limit: int | None = None,
                          cursor: str | None = None) -> dict[str, Any]:
        """One page of tokens, newest first, never a secret: `{items, next_cursor}` (pass `next_cursor`
        back as `cursor` for the next). An operator sees every token, a service the user tokens it issued."""
        query = {name: str(value) for name, value in
                 (("role", role), ("subject", subject), ("limit", limit), ("cursor", cursor)) if value is not None}
        return await self._json("GET", "/v1/tokens", query=query)

    async def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Revoke a token at once (409 `conflict` for the last live operator token); the revoked record."""
        return await self._json("DELETE", f"/v1/tokens/{_seg(token_id)}")

    async def _json(self, method: str, path: str, *, body: Any = None, query: Mapping[str, str] | None = None,
                    headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The answer's JSON object: every answer of the API is one (a record, a page, a key set)."""
        sent = {"Accept": "application/json", **(headers or {})}
        if self._token is not None:
            sent["Authorization"] = f"Bearer {self._token}"
        async with self._transport.get().request(method, self.base_url + path, json=body, params=query,
                                                 headers=sent, timeout=self._transport.timeout) as response:
            text = await response.text()
            status, retry_after = response.status, _retry_after(response.headers.get("Retry-After"))
            reason = response.reason or ""
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError:
            data = None
        if status >= 400:
            problem = data if isinstance(data, dict) else {"title": reason, "status": status, "detail": text}
            raise ApiError(status, problem, retry_after=retry_after)
        if not isinstance(data, dict):
            detail = f"expected a JSON object, got {text[:200]!r}"
            raise ApiError(status, {"title": "Not a JSON object", "status": status, "detail": detail})
        return data


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: int = 300,
                   now: float | None = None) -> Any:
    """Check a Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature = space-separated
    "v1,<base64 HMAC-SHA256>" over f"{id}.{timestamp}.{body}", keyed with the base64 of the secret after
    "whsec_"), within `tolerance_s` of `now` both ways; return the parsed JSON body, or raise
    WebhookVerificationError."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id, stamp, signatures = (lowered.get(f"webhook-{name}") for name in ("id", "timestamp", "signature"))
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not (stamp.isascii() and stamp.isdigit()):
        raise WebhookVerificationError(f"webhook-timestamp {stamp!r} is not whole seconds")
    age = (time.time() if now is None else now) - int(stamp)
    if abs(age) > tolerance_s:
        raise WebhookVerificationError(f"the timestamp is {abs(age):.0f} s in the {'past' if age > 0 else 'future'}"
                                       f", beyond the tolerance of {tolerance_s} s")
    key = _b64decode(secret.removeprefix("whsec_"))
    if not key:
        raise WebhookVerificationError("the secret is not base64 (after whsec_), or empty")
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(_b64decode(value) or b"", expected):
            try:
                return json.loads(body)
            except ValueError as exc:
                raise WebhookVerificationError(f"the signed body is not JSON: {exc}") from None
    raise WebhookVerificationError("no v1 signature matches the body")


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _seg(value: str | int) -> str:
    return quote(str(value), safe="")


def _items(page: Any) -> list[dict[str, Any]]:
    return list(page.get("items", [])) if isinstance(page, dict) else []


def _wait(wait_s: float) -> dict[str, str]:
    return {"wait": f"{wait_s:g}"} if wait_s > 0 else {}


def _rfc3339(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("expires_at must be timezone-aware (a naive datetime names no instant)")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _retry_after(value: str | None) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
