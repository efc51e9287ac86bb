"""Webhook records: a caller's endpoint (URL and signing secret), a delivery in the outbox,
and the attempts made on it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True)
class Endpoint:
    owner: str
    url: str | None
    secret: str = field(repr=False)  # never in a log line
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DueDelivery:
    """A delivery a dispatcher has claimed (leased) and is to send now."""

    id: uuid.UUID
    execution_id: uuid.UUID
    event_type: str
    url: str
    attempts: int  # made before this one
    payload: bytes = field(repr=False)
    secret: str = field(repr=False)  # the endpoint owner's current secret


@dataclass(frozen=True)
class Attempt:
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "started_at": _iso(self.started_at), "duration_ms": self.duration_ms,
                "status_code": self.status_code, "error": self.error}


@dataclass(frozen=True)
class Delivery:
    id: uuid.UUID
    execution_id: uuid.UUID
    event_type: str
    url: str
    endpoint_owner: str
    status: str  # pending, delivered, failed
    attempt_count: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    payload_sha256: str
    payload_bytes: int
    attempts: tuple[Attempt, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "execution_id": str(self.execution_id),
            "event_type": self.event_type,
            "url": self.url,
            "status": self.status,
            "attempt_count": self.attempt_count,
            "next_attempt_at": _iso(self.next_attempt_at) if self.status == "pending" else None,
            "created_at": _iso(self.created_at),
            "delivered_at": _iso(self.delivered_at),
            "last_error": self.last_error,
            "payload_sha256": self.payload_sha256,
            "payload_bytes": self.payload_bytes,
            "attempts": [attempt.to_dict() for attempt in self.attempts],
        }
