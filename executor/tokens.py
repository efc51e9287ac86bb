"""Bearer tokens: generated here, shown once, stored only as their SHA-256; listed, expired,
revoked (docs/tokens.md).

A token is 256 random bits, so a plain SHA-256 is enough to make the stored value useless to a
thief (no password stretching needed), and lookups stay a single indexed equality. Nothing about
a token is cached in a process: every request reads its row, so a revocation or an expiry holds
on the next request, on every API process.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from executor.errors import Conflict, Forbidden, NotFound, RequestInvalid
from executor.instants import parse_instant
from executor.pagination import decode_cursor, encode_cursor
from executor.records.principals import DEFAULT_PRIORITY, PRIORITIES, IssuedToken, Principal, Role, TokenInfo
from executor.storage import tokens as token_sql

TOKEN_PREFIX = "exe_"
BOOTSTRAP_SUBJECT = "bootstrap"
MAX_PAGE = 100

log = logging.getLogger(__name__)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _invalid(pointer: str, detail: str) -> RequestInvalid:
    return RequestInvalid(f"{pointer}: {detail}", errors=[{"pointer": pointer, "detail": detail}])


def parse_expiry(raw: Any) -> datetime | None:
    """`expires_at`: an RFC 3339 date-time with its offset, or None (never)."""
    return parse_instant(raw, "/expires_at")


def check_granted(role: Role, granted: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The priority classes a new token is granted: a service token's only, and `normal` among
    them (what a submission without a priority asks for). Kept in the order of PRIORITIES."""
    if granted is None:
        return None
    if role is not Role.SERVICE:
        raise _invalid("/priorities", "only a service token is granted priority classes (an operator may use any, "
                                      "a user normal)")
    if DEFAULT_PRIORITY not in granted:
        raise _invalid("/priorities", f"must include {DEFAULT_PRIORITY!r}, which a submission asks for by default")
    return tuple(p for p in PRIORITIES if p in granted)


class Tokens:
    """Issuing, listing and revoking tokens, and telling whose a presented one is."""

    def __init__(self, db: asyncpg.Pool) -> None:
        self.db = db

    async def issue(self, role: Role, subject: str, *, created_by: str | None = None,
                    expires_at: datetime | None = None, granted: tuple[str, ...] | None = None) -> IssuedToken:
        """Store a new random token for role and subject; RequestInvalid when `expires_at` is past."""
        secret = new_token()
        info = await token_sql.insert_token(self.db, hash_token(secret), role.value, subject,
                                            created_by=created_by, expires_at=expires_at,
                                            granted=check_granted(role, granted))
        if info is None:
            raise _invalid("/expires_at", "must be in the future")
        return IssuedToken(secret, info)

    async def create(self, caller: Principal, body: dict[str, Any]) -> IssuedToken:
        """POST /v1/tokens, its body checked against the contract's CreateToken: an operator issues
        any role, a service issues user tokens (the subject is the user)."""
        role = Role(body["role"])
        if caller.role is Role.SERVICE and role is not Role.USER:
            raise Forbidden("a service issues user tokens only")
        granted = body.get("priorities")
        if granted is not None and caller.role is not Role.OPERATOR:
            raise Forbidden("only an operator sets the priority classes of a token")
        return await self.issue(role, body["subject"], created_by=caller.party,
                                expires_at=parse_expiry(body.get("expires_at")),
                                granted=tuple(granted) if granted is not None else None)

    async def list_page(self, caller: Principal | None, *, role: str | None, subject: str | None, cursor: str | None,
                        limit: int) -> tuple[list[TokenInfo], str | None]:
        """Operators (and the host's CLI, `caller` None) see every token; a service the user tokens it
        issued. Newest first."""
        try:
            before = decode_cursor(cursor) if cursor else None
        except ValueError:
            raise _invalid("?cursor", "not a cursor this service gave") from None
        limit = max(1, min(limit, MAX_PAGE))
        issuer = None if caller is None or caller.role is Role.OPERATOR else caller.party
        found = await token_sql.list_page(self.db, created_by=issuer, role=role, subject=subject, before=before,
                                          limit=limit)
        return found, encode_cursor(found[-1].created_at, found[-1].id) if len(found) == limit else None

    async def revoke(self, caller: Principal | None, token_id: str) -> TokenInfo:
        """Revoke at once (again: the same record). An operator (or the host's CLI, `caller` None)
        revokes any token, a service the user tokens it issued; the last live operator token stays."""
        try:
            parsed = uuid.UUID(token_id)
        except ValueError:
            raise NotFound(f"no token {token_id!r}") from None
        issuer = None if caller is None or caller.role is Role.OPERATOR else caller.party
        try:
            revoked = await token_sql.revoke(self.db, parsed, created_by=issuer)
        except token_sql.LastOperator:
            raise Conflict("this is the last live operator token: create another operator token first") from None
        if revoked is None:
            raise NotFound(f"no token {token_id!r}")
        return revoked

    async def authenticate(self, token: str) -> Principal | None:
        """Whose live token this is, or None (unknown, revoked or expired). One indexed read; a write
        of last_used_at only when the stored one is older than LAST_USED_GRANULARITY_S."""
        found = await token_sql.find_live(self.db, hash_token(token))
        if found is None:
            return None
        if found.last_used_stale:
            await token_sql.touch(self.db, found.id)
        return Principal(found.role, found.subject, found.granted)

    async def ensure_bootstrap_operator(self, configured: str | None) -> str | None:
        """Make the configured bootstrap token exist (once: a revoked one stays revoked), or create
        one when no live operator token exists. Returns a newly created token (for printing once)."""
        if configured:
            info = await token_sql.insert_bootstrap(self.db, hash_token(configured), BOOTSTRAP_SUBJECT)
            if info.revoked_at is not None:
                log.warning("EXECUTOR_BOOTSTRAP_TOKEN was revoked (%s) and stays so; use another operator token",
                            info.revoked_at.isoformat())
            return None
        if await token_sql.live_operator_exists(self.db):
            return None
        return (await self.issue(Role.OPERATOR, BOOTSTRAP_SUBJECT)).token
