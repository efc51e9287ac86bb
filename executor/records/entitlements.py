"""Entitlement records: a user's right to run one agent, for a time and/or a number of uses."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class EntitlementState(str, enum.Enum):
    LIVE = "live"
    EXPIRED = "expired"
    REVOKED = "revoked"
    USED_UP = "used_up"


@dataclass(frozen=True)
class Entitlement:
    id: uuid.UUID
    user: str  # the subject of the user's token
    agent_id: uuid.UUID
    granted_by: str
    expires_at: datetime | None
    uses: int | None  # granted; None: unlimited
    uses_remaining: int | None
    uses_consumed: int
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None

    def state(self, now: datetime) -> EntitlementState:
        """Why it does or does not let its user run the agent now (revoked wins over the rest)."""
        if self.revoked_at is not None:
            return EntitlementState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return EntitlementState.EXPIRED
        if self.uses_remaining is not None and self.uses_remaining <= 0:
            return EntitlementState.USED_UP
        return EntitlementState.LIVE

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "user": self.user,
            "agent_id": str(self.agent_id),
            "state": self.state(now).value,
            "granted_by": self.granted_by,
            "expires_at": _iso(self.expires_at),
            "uses": self.uses,
            "uses_remaining": self.uses_remaining,
            "uses_consumed": self.uses_consumed,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "revoked_at": _iso(self.revoked_at),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
