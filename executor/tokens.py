"""Bearer tokens: generated here, shown once, stored only as their SHA-256.

A token is 256 random bits, so a plain SHA-256 is enough to make the stored
value useless to a thief (no password stretching needed), and lookups stay a
single indexed equality.
"""

from __future__ import annotations

import hashlib
import secrets

import asyncpg

from executor.records.principals import IssuedToken, Principal, Role

__all__ = ["IssuedToken", "Principal", "Role", "authenticate", "issue"]
from executor.storage import tokens as token_sql

TOKEN_PREFIX = "exe_"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def issue(db: asyncpg.Pool, role: Role, subject: str, *, token: str | None = None) -> IssuedToken:
    """Store a token (a new random one unless given) for role and subject."""
    secret = token or new_token()
    row = await token_sql.insert_token(db, hash_token(secret), role.value, subject)
    return IssuedToken(secret, str(row["id"]), role, subject)


async def authenticate(db: asyncpg.Pool, token: str) -> Principal | None:
    row = await token_sql.find_token(db, hash_token(token))
    return Principal(Role(row["role"]), row["subject"]) if row else None


async def ensure_bootstrap_operator(db: asyncpg.Pool, configured: str | None) -> str | None:
    """Make the configured bootstrap token valid, or create one when no operator exists.

    Returns a newly created token (for printing once), else None.
    """
    if configured:
        await issue(db, Role.OPERATOR, "bootstrap", token=configured)
        return None
    if await token_sql.operator_exists(db):
        return None
    return (await issue(db, Role.OPERATOR, "bootstrap")).token
