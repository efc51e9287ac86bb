"""Who calls: a token's role and subject, and the "role:subject" name records use for parties;
a token's record (TokenInfo) and a token just issued, with its secret (IssuedToken)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class Role(str, enum.Enum):
    USER = "user"
    SERVICE = "service"
    OPERATOR = "operator"


PRIORITIES = ("high", "normal", "low")  # the classes of the job queue, highest first (queue/classes.py)
DEFAULT_PRIORITY = "normal"


def priorities_of(role: Role, granted: tuple[str, ...] | None) -> tuple[str, ...]:
    """The classes a token may submit at: an operator any; a service normal and low, or what an
    operator granted its token; a user normal only (docs/scaling.md, "Priority classes")."""
    if role is Role.OPERATOR:
        return PRIORITIES
    if role is Role.SERVICE:
        return granted or ("normal", "low")
    return (DEFAULT_PRIORITY,)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the role of their token and the subject it names."""

    role: Role
    subject: str
    granted: tuple[str, ...] | None = None  # a service token's classes, as an operator set them

    @property
    def priorities(self) -> tuple[str, ...]:
        return priorities_of(self.role, self.granted)

    @property
    def party(self) -> str:
        """"role:subject": how records name who owns, granted or submitted something."""
        return f"{self.role.value}:{self.subject}"


@dataclass(frozen=True)
class TokenInfo:
    """A bearer token as it may be shown: everything but its secret (which is never stored)."""

    id: uuid.UUID
    role: Role
    subject: str
    created_at: datetime
    created_by: str | None  # "role:subject" of the issuer; None when made on the host (bootstrap, CLI)
    expires_at: datetime | None  # None: never
    last_used_at: datetime | None  # to about a minute (see docs/tokens.md)
    revoked_at: datetime | None
    granted: tuple[str, ...] | None = None  # see Principal

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "role": self.role.value,
            "subject": self.subject,
            "priorities": list(priorities_of(self.role, self.granted)),
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "expires_at": _iso(self.expires_at),
            "last_used_at": _iso(self.last_used_at),
            "revoked_at": _iso(self.revoked_at),
        }


@dataclass(frozen=True)
class IssuedToken:
    """A token just issued: its record and its secret, which is shown this once."""

    token: str  # the secret; returned once, never stored
    info: TokenInfo

    @property
    def id(self) -> str:
        return str(self.info.id)

    @property
    def role(self) -> Role:
        return self.info.role

    @property
    def subject(self) -> str:
        return self.info.subject

    @property
    def party(self) -> str:
        """"role:subject": how records name who owns, granted or submitted something."""
        return f"{self.role.value}:{self.subject}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.info.to_dict(), "token": self.token}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
