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



# Many keys of one caller at once (a batch of submissions, each item with its own key).

async def find_many(conn: Connection, caller: str, keys: list[str], ttl_s: float) -> dict[str, StoredKey]:
    """The live keys among `keys`, by key, in one query."""
    rows = await conn.fetch(
        "SELECT key, request_sha256, execution_id FROM idempotency_keys WHERE caller = $1 AND key = ANY($2::text[])"
        " AND created_at > now() - make_interval(secs => $3)",
        caller, keys, ttl_s,
    )
    return {row["key"]: StoredKey(row["request_sha256"], row["execution_id"]) for row in rows}


async def claim_many(conn: asyncpg.Connection, caller: str, claims: list[tuple[str, bytes]], ttl_s: float) -> set[str]:
    """`claim` for distinct keys at once, (key, request_sha256) each: the keys that are ours. They
    are inserted in key order, so that two transactions claiming overlapping keys wait for each
    other in one order and never deadlock."""
    keys = [key for key, _ in claims]
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE caller = $1 AND key = ANY($2::text[])"
        " AND created_at <= now() - make_interval(secs => $3)",
        caller, keys, ttl_s,
    )
    rows = await conn.fetch(
        "INSERT INTO idempotency_keys (caller, key, request_sha256)"
        " SELECT $1, claimed.key, claimed.sha256 FROM unnest($2::text[], $3::bytea[]) AS claimed(key, sha256)"
        " ORDER BY claimed.key ON CONFLICT (caller, key) DO NOTHING RETURNING key",
        caller, keys, [sha256 for _, sha256 in claims],
    )
    return {row["key"] for row in rows}


async def bind_many(conn: asyncpg.Connection, caller: str, bindings: list[tuple[str, uuid.UUID]]) -> None:
    """`bind` for many keys claimed in this transaction: (key, execution id) each."""
    if bindings:
        await conn.execute(
            "UPDATE idempotency_keys AS k SET execution_id = bound.execution_id"
            " FROM unnest($2::text[], $3::uuid[]) AS bound(key, execution_id)"
            " WHERE k.caller = $1 AND k.key = bound.key",
            caller, [key for key, _ in bindings], [execution_id for _, execution_id in bindings],
        )


async def release_unbound(conn: asyncpg.Connection, caller: str, keys: list[str]) -> None:
    """Give up keys this transaction claimed for requests it then refused (no execution bound):
    a refused request does not keep its key, as when a single submission's transaction rolls back."""
    if keys:
        await conn.execute(
            "DELETE FROM idempotency_keys WHERE caller = $1 AND key = ANY($2::text[]) AND execution_id IS NULL",
            caller, keys,
        )
