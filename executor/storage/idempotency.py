"""SQL for Idempotency-Key: per caller, the first request's fingerprint and its execution."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from executor.storage.database import Connection


@dataclass(frozen=True)
class StoredKey:
    request_sha256: bytes
    execution_id: uuid.UUID | None  # None only inside the transaction that claimed the key


async def find(conn: Connection, caller: str, key: str, ttl_s: float) -> StoredKey | None:
    row = await conn.fetchrow(
        "SELECT request_sha256, execution_id FROM idempotency_keys WHERE caller = $1 AND key = $2"
        " AND created_at > now() - make_interval(secs => $3)",
        caller, key, ttl_s,
    )
    return StoredKey(row["request_sha256"], row["execution_id"]) if row else None


async def claim(conn: asyncpg.Connection, caller: str, key: str, request_sha256: bytes, ttl_s: float) -> bool:
    """Claim the key for this transaction's request: True when it is ours. A racing claim of
    the same key waits here for ours to commit (then sees it taken) or roll back (then wins)."""
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2"
        " AND created_at <= now() - make_interval(secs => $3)",
        caller, key, ttl_s,
    )
    claimed = await conn.fetchval(
        "INSERT INTO idempotency_keys (caller, key, request_sha256) VALUES ($1, $2, $3)"
        " ON CONFLICT (caller, key) DO NOTHING RETURNING true",
        caller, key, request_sha256,
    )
    return bool(claimed)


async def bind(conn: asyncpg.Connection, caller: str, key: str, execution_id: uuid.UUID) -> None:
    await conn.execute("UPDATE idempotency_keys SET execution_id = $3 WHERE caller = $1 AND key = $2",
                       caller, key, execution_id)

