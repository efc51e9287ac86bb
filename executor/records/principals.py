"""Who calls: a token's role and subject, and the "role:subject" name records use for parties."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(str, enum.Enum):
    USER = "user"
    SERVICE = "service"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the role of their token and the subject it names."""

    role: Role
    subject: str

    @property
    def party(self) -> str:
        """"role:subject": how records name who owns, granted or submitted something."""
        return f"{self.role.value}:{self.subject}"


@dataclass(frozen=True)
class IssuedToken:
    token: str  # the secret; returned once, never stored
    id: str
    role: Role
    subject: str

    @property
    def party(self) -> str:
        """"role:subject": how records name who owns, granted or submitted something."""
        return f"{self.role.value}:{self.subject}"
