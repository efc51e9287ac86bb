"""Bearer tokens: generated here, shown once, stored only as their SHA-256.

A token is 256 random bits, so a plain SHA-256 is enough to make the stored
value useless to a thief (no password stretching needed), and lookups stay a
single indexed equality.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import asyncpg

from executor.errors import RequestInvalid
from executor.records.principals import IssuedToken, Principal, Role
from executor.storage import tokens as token_sql

TOKEN_PREFIX = "exe_"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_request(body: Any) -> tuple[Role, str]:
    """The role and subject a request for a token names (POST /v1/tokens), or RequestInvalid."""
    role = body.get("role") if isinstance(body, dict) else None
    subject = body.get("subject") if isinstance(body, dict) else None
    if not isinstance(role, str) or role not in {r.value for r in Role}:
        raise RequestInvalid("role must be user, service or operator",
                             errors=[{"pointer": "/role", "detail": "unknown role"}])
    if not isinstance(subject, str) or not 0 < len(subject) <= 200:
        raise RequestInvalid("subject must be a non-empty string",
                             errors=[{"pointer": "/subject", "detail": "required"}])
    return Role(role), subject


class Tokens:
    """Issuing tokens and telling whose a presented one is."""

    def __init__(self, db: asyncpg.Pool) -> None:
        self.db = db

    async def issue(self, role: Role, subject: str, *, token: str | None = None) -> IssuedToken:
        """Store a token (a new random one unless given) for role and subject."""
        secret = token or new_token()
        row = await token_sql.insert_token(self.db, hash_token(secret), role.value, subject)
        return IssuedToken(secret, str(row["id"]), role, subject)

    async def authenticate(self, token: str) -> Principal | None:
        row = await token_sql.find_token(self.db, hash_token(token))
        return Principal(Role(row["role"]), row["subject"]) if row else None

    async def ensure_bootstrap_operator(self, configured: str | None) -> str | None:
        """Make the configured bootstrap token valid, or create one when no operator exists.

        Returns a newly created token (for printing once), else None.
        """
        if configured:
            await self.issue(Role.OPERATOR, "bootstrap", token=configured)
            return None
        if await token_sql.operator_exists(self.db):
            return None
        return (await self.issue(Role.OPERATOR, "bootstrap")).token
