"""SQL for bearer tokens (stored hashed): issuing, authenticating, listing, revoking.

Every instant that decides whether a token works (its expiry, its revocation, when it was
last used) is the database's `now()`, so that every API process judges a token alike."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from executor.records.principals import Role, TokenInfo
from executor.storage.database import Connection

_COLUMNS = "id, role, subject, created_at, created_by, expires_at, last_used_at, revoked_at, priorities"
_LIVE = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"

# Revocations take this transaction lock first, so that two of them never both see the other's
# operator token as the one that stays (the last live operator token is never revoked).
_REVOCATION_LOCK = 0x746F_6B6E  # "tokn"

# last_used_at is written when it is older than this: about once a minute per token at most.
LAST_USED_GRANULARITY_S = 60


@dataclass(frozen=True)
class Presented:
    """The live token a request presented: whose it is, and whether its last use needs writing."""

    id: uuid.UUID
    role: Role
    subject: str
    last_used_stale: bool
    granted: tuple[str, ...] | None = None


def _record(row: asyncpg.Record) -> TokenInfo:
    return TokenInfo(id=row["id"], role=Role(row["role"]), subject=row["subject"], created_at=row["created_at"],
                     created_by=row["created_by"], expires_at=row["expires_at"], last_used_at=row["last_used_at"],
                     revoked_at=row["revoked_at"], granted=_granted(row["priorities"]))


def _granted(stored: list[str] | None) -> tuple[str, ...] | None:
    return tuple(stored) if stored else None


async def insert_token(db: Connection, token_hash: bytes, role: str, subject: str, *, created_by: str | None,
                       expires_at: datetime | None, granted: tuple[str, ...] | None = None) -> TokenInfo | None:
    """A new token; None when `expires_at` is not in the future (by the database's clock)."""
    row = await db.fetchrow(
        f"INSERT INTO tokens (id, token_hash, role, subject, created_by, expires_at, priorities)"
        f" SELECT $1, $2, $3, $4, $5, $6, $7 WHERE $6::timestamptz IS NULL OR $6 > now()"
        f" RETURNING {_COLUMNS}",
        uuid.uuid4(), token_hash, role, subject, created_by, expires_at, list(granted) if granted else None,
    )
    return _record(row) if row else None


async def insert_bootstrap(db: Connection, token_hash: bytes, subject: str) -> TokenInfo:
    """The configured bootstrap operator token: inserted once, then left as it is. A restart
    neither brings a revoked one back nor changes anything else about it."""
    row = await db.fetchrow(
        f"INSERT INTO tokens (id, token_hash, role, subject) VALUES ($1, $2, 'operator', $3)"
        f" ON CONFLICT (token_hash) DO NOTHING RETURNING {_COLUMNS}",
        uuid.uuid4(), token_hash, subject,
    )
    if row is None:  # there already (a later statement sees it, even one a racing process just committed)
        row = await db.fetchrow(f"SELECT {_COLUMNS} FROM tokens WHERE token_hash = $1", token_hash)
    return _record(row)


async def find_live(db: Connection, token_hash: bytes) -> Presented | None:
    """The unrevoked, unexpired token with this hash: one read of the unique index."""
    row = await db.fetchrow(
        f"SELECT id, role, subject, priorities,"
        f" (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2)) AS stale"
        f" FROM tokens WHERE token_hash = $1 AND {_LIVE}",
        token_hash, float(LAST_USED_GRANULARITY_S),
    )
    return Presented(row["id"], Role(row["role"]), row["subject"], row["stale"],
                     _granted(row["priorities"])) if row else None


async def touch(db: Connection, token_id: uuid.UUID) -> None:
    """Record a use, unless another request (on any process) recorded one within the granularity."""
    await db.execute(
        "UPDATE tokens SET last_used_at = now() WHERE id = $1"
        " AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))",
        token_id, float(LAST_USED_GRANULARITY_S),
    )


async def live_operator_exists(db: Connection) -> bool:
    return bool(await db.fetchval(f"SELECT EXISTS (SELECT 1 FROM tokens WHERE role = 'operator' AND {_LIVE})"))


async def list_page(db: Connection, *, created_by: str | None, role: str | None, subject: str | None,
                    before: tuple[datetime, uuid.UUID] | None, limit: int) -> list[TokenInfo]:
    """Newest first; `created_by` set: only the user tokens that party issued."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM tokens"
        " WHERE ($1::text IS NULL OR (created_by = $1 AND role = 'user'))"
        " AND ($2::text IS NULL OR role = $2) AND ($3::text IS NULL OR subject = $3)"
        " AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))"
        " ORDER BY created_at DESC, id DESC LIMIT $6",
        created_by, role, subject, before[0] if before else None, before[1] if before else None, limit,
    )
    return [_record(row) for row in rows]


class LastOperator(Exception):
    """Revoking this token would leave no live operator token."""


async def revoke(pool: asyncpg.Pool, token_id: uuid.UUID, *, created_by: str | None) -> TokenInfo | None:
    """Revoke a token at once (a no-op when already revoked); None when there is no such token
    (or, with `created_by`, no user token that party issued). Raises LastOperator rather than
    revoke the last live operator token: under one lock, so racing revocations see each other."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _REVOCATION_LOCK)
        # Read after the lock: each statement of the transaction sees what the previous holder committed.
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS}, {_LIVE} AS live FROM tokens"
            " WHERE id = $1 AND ($2::text IS NULL OR (created_by = $2 AND role = 'user'))",
            token_id, created_by,
        )
        if row is None:
            return None
        if row["revoked_at"] is not None:
            return _record(row)
        if row["role"] == Role.OPERATOR.value and row["live"]:
            others = await conn.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM tokens WHERE role = 'operator' AND id <> $1 AND {_LIVE})", token_id)
            if not others:
                raise LastOperator(str(token_id))
        revoked = await conn.fetchrow(
            f"UPDATE tokens SET revoked_at = now() WHERE id = $1 RETURNING {_COLUMNS}", token_id)
        return _record(revoked)
