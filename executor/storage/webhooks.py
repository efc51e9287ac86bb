"""SQL for webhooks: each caller's endpoint (URL and signing secret), the delivery outbox, and
the attempts made on each delivery (migration 0006).

Deliveries are sent at least once: a dispatcher holds a lease on what it claimed, and a lease
that expires (the dispatcher died mid-attempt) makes the delivery due again. Receivers tell a
repeat by its webhook-id, which is the delivery id.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from executor.records.webhooks import Attempt, Delivery, DueDelivery, Endpoint
from executor.storage.database import Connection

_ENDPOINT = "owner, url, secret, created_at, updated_at"


def _endpoint(row: asyncpg.Record) -> Endpoint:
    return Endpoint(row["owner"], row["url"], row["secret"], row["created_at"], row["updated_at"])


async def get_endpoint(conn: Connection, owner: str) -> Endpoint | None:
    row = await conn.fetchrow(f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE owner = $1", owner)
    return _endpoint(row) if row else None


async def ensure_endpoint(conn: Connection, owner: str, new_secret: str) -> Endpoint:
    """The owner's endpoint, created with `new_secret` and no URL when it has none yet."""
    row = await conn.fetchrow(
        f"INSERT INTO webhook_endpoints (owner, secret) VALUES ($1, $2) ON CONFLICT (owner) DO NOTHING"
        f" RETURNING {_ENDPOINT}", owner, new_secret)
    if row is not None:
        return _endpoint(row)
    endpoint = await get_endpoint(conn, owner)
    assert endpoint is not None, "an endpoint is never deleted"
    return endpoint


async def set_endpoint_url(conn: Connection, owner: str, url: str | None, new_secret: str) -> Endpoint:
    """Set (or, with None, clear) the owner's default URL; `url` must have passed targets.check_url."""
    row = await conn.fetchrow(
        f"INSERT INTO webhook_endpoints (owner, url, secret) VALUES ($1, $2, $3)"
        f" ON CONFLICT (owner) DO UPDATE SET url = EXCLUDED.url, updated_at = now() RETURNING {_ENDPOINT}",
        owner, url, new_secret)
    return _endpoint(row)


async def rotate_secret(conn: Connection, owner: str, new_secret: str) -> Endpoint:
    """`new_secret`: every attempt from now on, including retries of older deliveries, is signed with it."""
    row = await conn.fetchrow(
        f"INSERT INTO webhook_endpoints (owner, secret) VALUES ($1, $2)"
        f" ON CONFLICT (owner) DO UPDATE SET secret = EXCLUDED.secret, updated_at = now() RETURNING {_ENDPOINT}",
        owner, new_secret)
    return _endpoint(row)


async def enqueue(conn: Connection, *, execution_id: uuid.UUID, event_type: str, url: str,
                  endpoint_owner: str, payload: bytes, new_secret: str) -> uuid.UUID | None:
    """Add a delivery (due now); None when this execution already has one to this URL.

    Meant to run in the transaction that writes the final state, so it commits with it. The
    owner's endpoint row is created (with `new_secret`) if missing: the delivery needs a secret to be signed with."""
    await conn.execute("INSERT INTO webhook_endpoints (owner, secret) VALUES ($1, $2) ON CONFLICT (owner) DO NOTHING",
                       endpoint_owner, new_secret)
    delivery_id: uuid.UUID | None = await conn.fetchval(
        "INSERT INTO webhook_deliveries (id, execution_id, event_type, url, endpoint_owner, payload)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (execution_id, url) DO NOTHING RETURNING id",
        uuid.uuid4(), execution_id, event_type, url, endpoint_owner, payload)
    return delivery_id


async def claim_due(conn: Connection, *, limit: int, lease_s: float, locked_by: str) -> list[DueDelivery]:
    """Lease up to `limit` due deliveries for `lease_s` seconds. SKIP LOCKED and the lease mean two
    dispatchers never hold the same delivery at once; the row locks last only this statement."""
    rows = await conn.fetch(
        "WITH due AS ("
        " SELECT id FROM webhook_deliveries"
        " WHERE status = 'pending' AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now())"
        " ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " UPDATE webhook_deliveries d SET locked_until = now() + make_interval(secs => $2), locked_by = $3"
        " FROM due, webhook_endpoints e WHERE d.id = due.id AND e.owner = d.endpoint_owner"
        " RETURNING d.id, d.execution_id, d.event_type, d.url, d.attempts, d.payload, e.secret",
        limit, lease_s, locked_by)
    return [DueDelivery(r["id"], r["execution_id"], r["event_type"], r["url"], r["attempts"], r["payload"],
                        r["secret"]) for r in rows]


async def record_attempt(conn: Connection, delivery_id: uuid.UUID, *, locked_by: str, started_at: datetime,
                         duration_ms: int, status_code: int | None, error: str | None, max_attempts: int,
                         retry_in_s: float) -> str:
    """Record one attempt (`error` None: it succeeded) and the delivery's new state, in one
    statement; returns the new status. A delivery that is no longer pending (another dispatcher
    finished it after our lease ran out) keeps its status: the attempt is still recorded."""
    status: str = await conn.fetchval(
        "WITH delivery AS ("
        " UPDATE webhook_deliveries SET attempts = attempts + 1,"
        "  status = CASE WHEN status <> 'pending' THEN status WHEN $5::text IS NULL THEN 'delivered'"
        "   WHEN attempts + 1 >= $6 THEN 'failed' ELSE 'pending' END,"
        "  delivered_at = CASE WHEN status = 'pending' AND $5::text IS NULL THEN now() ELSE delivered_at END,"
        "  next_attempt_at = CASE WHEN $5::text IS NULL THEN next_attempt_at"
        "   ELSE now() + make_interval(secs => $7) END,"
        "  last_error = $5::text,"
        "  locked_until = CASE WHEN locked_by = $8 THEN NULL ELSE locked_until END,"
        "  locked_by = CASE WHEN locked_by = $8 THEN NULL ELSE locked_by END"
        " WHERE id = $1 RETURNING attempts, status),"
        " attempt AS (INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error)"
        "  SELECT $1, attempts, $2, $3, $4, $5::text FROM delivery)"
        " SELECT status FROM delivery",
        delivery_id, started_at, duration_ms, status_code, error, max_attempts, retry_in_s, locked_by)
    return status


async def count_pending(conn: Connection) -> int:
    """Deliveries waiting for their first or next attempt (the outbox's depth, for /metrics)."""
    count: int = await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
    return count


async def release(conn: Connection, *, locked_by: str) -> int:
    """Give up the leases a stopping dispatcher still holds, so its deliveries are due again at once."""
    done = await conn.execute(
        "UPDATE webhook_deliveries SET locked_until = NULL, locked_by = NULL WHERE locked_by = $1", locked_by)
    return int(done.split()[-1])


async def requeue_failed(conn: Connection, execution_id: uuid.UUID, delivery_id: uuid.UUID) -> bool:
    """Make a failed delivery of this execution due again now (a resend); False when it is not
    failed (or not there). Its attempts stay, and go on being numbered from the last one."""
    done = await conn.execute(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), locked_until = NULL,"
        " locked_by = NULL WHERE id = $1 AND execution_id = $2 AND status = 'failed'",
        delivery_id, execution_id)
    return bool(int(done.split()[-1]))


async def deliveries_of(conn: Connection, execution_id: uuid.UUID, *, limit: int | None = None,
                        after: tuple[datetime, uuid.UUID] | None = None,
                        only: uuid.UUID | None = None) -> list[Delivery]:
    """An execution's deliveries, oldest first, each with its attempts (never the payload or a secret):
    at most `limit` of them, those after the (created_at, id) `after` when given, the one `only` when given."""
    after_at, after_id = after if after is not None else (None, None)
    rows = await conn.fetch(
        "SELECT id, execution_id, event_type, url, endpoint_owner, status, attempts, next_attempt_at, created_at,"
        " delivered_at, last_error, encode(sha256(payload), 'hex') AS payload_sha256,"
        " length(payload) AS payload_bytes FROM webhook_deliveries WHERE execution_id = $1"
        " AND ($2::timestamptz IS NULL OR (created_at, id) > ($2::timestamptz, $3::uuid))"
        " AND ($5::uuid IS NULL OR id = $5) ORDER BY created_at, id LIMIT $4",
        execution_id, after_at, after_id, limit, only)
    attempts: dict[uuid.UUID, list[Attempt]] = {row["id"]: [] for row in rows}
    for a in await conn.fetch(
            "SELECT delivery_id, attempt, started_at, duration_ms, status_code, error FROM webhook_attempts"
            " WHERE delivery_id = ANY($1::uuid[]) ORDER BY delivery_id, attempt", list(attempts)):
        attempts[a["delivery_id"]].append(Attempt(a["attempt"], a["started_at"], a["duration_ms"],
                                                  a["status_code"], a["error"]))
    return [Delivery(r["id"], r["execution_id"], r["event_type"], r["url"], r["endpoint_owner"], r["status"],
                     r["attempts"], r["next_attempt_at"], r["created_at"], r["delivered_at"], r["last_error"],
                     r["payload_sha256"], r["payload_bytes"], tuple(attempts[r["id"]])) for r in rows]
