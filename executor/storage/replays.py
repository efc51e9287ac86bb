"""SQL for the replays of creating POSTs (executor/replays.py): per caller and Idempotency-Key,
the first request's fingerprint and, once it succeeded, its answer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from executor.storage.database import Connection

# Deleted per statement by the sweep of expired rows: a backlog drains over several statements.
PURGE_BATCH = 500


@dataclass(frozen=True)
class StoredReplay:
    request_sha256: bytes
    status: int | None  # None while the first request runs
    headers: dict[str, str]
    body: bytes


async def claim(conn: Connection, caller: str, key: str, request_sha256: bytes, claim_id: uuid.UUID, *,
                ttl_s: float, lease_s: float) -> bool:
    """Take the key for the request `claim_id`: True when it is ours. One statement, so two
    processes claiming at once cannot both win. A key is free when no row holds it, when its
    row has expired, or when its row has no answer after `lease_s` (its request's process died)."""
    claimed = await conn.fetchval(
        "INSERT INTO replays (caller, key, request_sha256, claim_id) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (caller, key) DO UPDATE SET request_sha256 = EXCLUDED.request_sha256,"
        " claim_id = EXCLUDED.claim_id, claimed_at = now(), status = NULL, headers = NULL, body = NULL"
        " WHERE replays.claimed_at <= now() - make_interval(secs => $5)"
        " OR (replays.status IS NULL AND replays.claimed_at <= now() - make_interval(secs => $6))"
        " RETURNING true",
        caller, key, request_sha256, claim_id, ttl_s, lease_s,
    )
    return bool(claimed)


async def find(conn: Connection, caller: str, key: str, ttl_s: float) -> StoredReplay | None:
    """The live row of the key, answered or not."""
    row = await conn.fetchrow(
        "SELECT request_sha256, status, headers, body FROM replays WHERE caller = $1 AND key = $2"
        " AND claimed_at > now() - make_interval(secs => $3)",
        caller, key, ttl_s,
    )
    if row is None:
        return None
    headers: dict[str, Any] = row["headers"] or {}
    return StoredReplay(row["request_sha256"], row["status"], {str(k): str(v) for k, v in headers.items()},
                        row["body"] or b"")


async def complete(conn: Connection, caller: str, key: str, claim_id: uuid.UUID, status: int,
                   headers: dict[str, str], body: bytes) -> bool:
    """Keep the answer of the request that holds the key; False when it no longer does."""
    done = await conn.fetchval(
        "UPDATE replays SET status = $4, headers = $5, body = $6"
        " WHERE caller = $1 AND key = $2 AND claim_id = $3 AND status IS NULL RETURNING true",
        caller, key, claim_id, status, headers, body,
    )
    return bool(done)


async def release(conn: Connection, caller: str, key: str, claim_id: uuid.UUID) -> None:
    """Give the key up: its request was refused or failed, so a retry may run it again."""
    await conn.execute("DELETE FROM replays WHERE caller = $1 AND key = $2 AND claim_id = $3 AND status IS NULL",
                       caller, key, claim_id)


async def delete_expired(conn: Connection, ttl_s: float, *, limit: int = PURGE_BATCH) -> int:
    """Delete up to `limit` rows older than the TTL, oldest first; how many. Rows another process
    is deleting are skipped, so sweeps of several processes share the work."""
    deleted = await conn.fetch(
        "DELETE FROM replays WHERE (caller, key) IN (SELECT caller, key FROM replays"
        " WHERE claimed_at <= now() - make_interval(secs => $1) ORDER BY claimed_at LIMIT $2"
        " FOR UPDATE SKIP LOCKED) RETURNING 1",
        ttl_s, limit,
    )
    return len(deleted)
