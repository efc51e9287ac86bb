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
from executor.records.principals import DEFAULT_PRIORITY, Principal, Role
from executor.settings import Settings

MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class SubmitRequest:
    agent_id: str
    version: int | None
    input: Any
    limits: Any
    webhook_url: str | None
    on_behalf_of: str | None
    priority: str = DEFAULT_PRIORITY


@dataclass(frozen=True)
class Parties:
    caller: str  # "role:subject" of the token that sent it
    owner: str
    user: str | None  # the user whose entitlement it takes, if any
    service: str | None  # the service it belongs to, when known before the entitlement is read


def parse_request(body: dict[str, Any]) -> SubmitRequest:
    """A submission whose shape was checked against the contract's SubmitExecution."""
    return SubmitRequest(body["agent_id"], body.get("version"), body["input"], body.get("limits"),
                         body.get("webhook_url"), body.get("on_behalf_of"), body.get("priority") or DEFAULT_PRIORITY)


def fingerprint(body: Any) -> bytes:
    """sha256 of the body's canonical form: what an idempotent replay must match. Up to a
    megabyte to serialize: called off the event loop, and only with an Idempotency-Key."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(canonical).digest()


def parties_of(principal: Principal, request: SubmitRequest) -> Parties:
    caller = principal.party
    if request.priority not in principal.priorities:
        raise Forbidden(f"this token may not submit at priority {request.priority!r}; it may use "
                        f"{', '.join(principal.priorities)} (an operator grants a service token others)")
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
