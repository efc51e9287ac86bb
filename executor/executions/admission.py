"""What a submission asks for, and on whose account: the parties of an execution.

    caller                      owner            entitlement   service            rate limits
    user u                      user:u           u's           its grantor        user u
    service s, on_behalf_of u   user:u           u's           service:s          user u, service s
    service s                   service:s        none          service:s          service s
    operator o, on_behalf_of u  user:u           u's           its grantor        user u
    operator o                  operator:o       none          none               none

The owner reads the execution; the service reads it too and gets its webhook.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from executor.errors import Forbidden, RequestInvalid
from executor.ratelimit import Bucket, Rate
from executor.records.principals import Principal, Role
from executor.settings import Settings

_SUBMIT_FIELDS = {"agent_id", "version", "input", "limits", "webhook_url", "on_behalf_of"}
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class SubmitRequest:
    agent_id: str
    version: int | None
    input: Any
    limits: Any
    webhook_url: str | None
    on_behalf_of: str | None


@dataclass(frozen=True)
class Parties:
    caller: str  # "role:subject" of the token that sent it
    owner: str
    user: str | None  # the user whose entitlement it takes, if any
    service: str | None  # the service it belongs to, when known before the entitlement is read


def _invalid(pointer: str, detail: str) -> RequestInvalid:
    return RequestInvalid(f"{pointer.lstrip('/')}: {detail}", errors=[{"pointer": pointer, "detail": detail}])


def parse_request(body: Any) -> SubmitRequest:
    if not isinstance(body, dict):
        raise RequestInvalid("the body must be a JSON object", errors=[{"pointer": "", "detail": "not an object"}])
    unknown = sorted(set(body) - _SUBMIT_FIELDS)
    if unknown:
        raise RequestInvalid(
            f"unknown field(s): {', '.join(unknown)}",
            errors=[{"pointer": f"/{k}", "detail": "unknown field"} for k in unknown],
        )
    if not isinstance(body.get("agent_id"), str):
        raise _invalid("/agent_id", "required string")
    version = body.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or not 0 < version < 2**31):
        raise _invalid("/version", "a version number, an integer from 1")
    if "input" not in body:
        raise _invalid("/input", "required")
    on_behalf_of = body.get("on_behalf_of")
    if on_behalf_of is not None and (not isinstance(on_behalf_of, str) or not 0 < len(on_behalf_of) <= 200):
        raise _invalid("/on_behalf_of", "a user's subject, a non-empty string")
    webhook_url = body.get("webhook_url")
    if webhook_url is not None and not isinstance(webhook_url, str):
        raise _invalid("/webhook_url", "a URL string")
    return SubmitRequest(body["agent_id"], version, body["input"], body.get("limits"), webhook_url, on_behalf_of)


def fingerprint(body: Any) -> bytes:
    """sha256 of the body's canonical form: what an idempotent replay must match. Up to a
    megabyte to serialize: called off the event loop, and only with an Idempotency-Key."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(canonical).digest()


def parties_of(principal: Principal, request: SubmitRequest) -> Parties:
    caller = principal.party
    if principal.role is Role.USER:
        if request.on_behalf_of is not None:
            raise Forbidden("only a service or an operator may submit on behalf of a user")
        if request.webhook_url is not None:
            raise Forbidden("only a service or an operator may ask for a webhook")
        return Parties(caller, caller, principal.subject, None)
    if request.on_behalf_of is not None:
        service = caller if principal.role is Role.SERVICE else None
        return Parties(caller, f"user:{request.on_behalf_of}", request.on_behalf_of, service)
    return Parties(caller, caller, None, caller if principal.role is Role.SERVICE else None)


def rate_buckets(principal: Principal, parties: Parties, settings: Settings) -> list[Bucket]:
    buckets = []
    if parties.user is not None and settings.user_rate_per_s > 0:
        buckets.append(Bucket(f"user:{parties.user}", Rate("user", settings.user_rate_per_s, settings.user_burst)))
    if principal.role is Role.SERVICE and settings.service_rate_per_s > 0:
        buckets.append(Bucket(parties.caller, Rate("service", settings.service_rate_per_s, settings.service_burst)))
    return buckets


def check_idempotency_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not 0 < len(raw) <= MAX_IDEMPOTENCY_KEY or not raw.isprintable():
        raise RequestInvalid(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable characters",
                             errors=[{"pointer": "header:Idempotency-Key", "detail": "1-255 printable characters"}])
    return raw
