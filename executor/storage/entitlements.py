"""SQL for entitlements. Taking a use is one conditional UPDATE: the row lock orders racing
submissions, so a 10-use entitlement accepts exactly 10 whatever arrives at once."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from executor.records.entitlements import Entitlement
from executor.storage.database import Connection

_COLUMNS = ("id, user_subject, agent_id, granted_by, expires_at, uses, uses_remaining, uses_consumed,"
            " created_at, updated_at, revoked_at, revoked_by")


def _record(row: asyncpg.Record) -> Entitlement:
    values = dict(row)
    values["user"] = values.pop("user_subject")
    return Entitlement(**values)


async def grant(conn: Connection, *, user: str, agent_id: uuid.UUID, granted_by: str, expires_at: datetime | None,
                uses: int | None) -> tuple[Entitlement, bool]:
    """Create the live entitlement of (user, agent), or set its terms anew; (it, created)."""
    row = await conn.fetchrow(
        f"INSERT INTO entitlements AS e (id, user_subject, agent_id, granted_by, expires_at, uses, uses_remaining)"
        " VALUES ($1, $2, $3, $4, $5, $6, $6)"
        " ON CONFLICT (user_subject, agent_id) WHERE revoked_at IS NULL DO UPDATE"
        " SET granted_by = EXCLUDED.granted_by, expires_at = EXCLUDED.expires_at, uses = EXCLUDED.uses,"
        " uses_remaining = EXCLUDED.uses_remaining, updated_at = now()"
        f" RETURNING {_COLUMNS}, (xmax = 0) AS created",
        uuid.uuid4(), user, agent_id, granted_by, expires_at, uses,
    )
    values = dict(row)
    created = values.pop("created")
    values["user"] = values.pop("user_subject")
    return Entitlement(**values), created


async def get(conn: Connection, entitlement_id: uuid.UUID) -> Entitlement | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM entitlements WHERE id = $1", entitlement_id)
    return _record(row) if row else None


async def list_page(conn: Connection, *, user: str | None, agent_id: uuid.UUID | None,
                    before: tuple[datetime, uuid.UUID] | None, limit: int) -> list[Entitlement]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM entitlements"
        " WHERE ($1::text IS NULL OR user_subject = $1) AND ($2::uuid IS NULL OR agent_id = $2)"
        " AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))"
        " ORDER BY created_at DESC, id DESC LIMIT $5",
        user, agent_id, before[0] if before else None, before[1] if before else None, limit,
    )
    return [_record(row) for row in rows]


async def revoke(conn: Connection, entitlement_id: uuid.UUID, revoked_by: str) -> Entitlement | None:
    """Revoke it (a no-op when already revoked); None when there is no such entitlement."""
    row = await conn.fetchrow(
        "UPDATE entitlements SET revoked_at = COALESCE(revoked_at, now()), revoked_by = COALESCE(revoked_by, $2),"
        f" updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
        entitlement_id, revoked_by,
    )
    return _record(row) if row else None


async def take_use(conn: asyncpg.Connection, *, user: str, agent_id: uuid.UUID) -> tuple[uuid.UUID, str] | None:
    """Take one use of the user's live entitlement to the agent: (its id, who granted it), or
    None when there is none."""
    row = await conn.fetchrow(
        "UPDATE entitlements SET uses_remaining = uses_remaining - 1, uses_consumed = uses_consumed + 1"
        " WHERE user_subject = $1 AND agent_id = $2 AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now()) AND (uses_remaining IS NULL OR uses_remaining > 0)"
        " RETURNING id, granted_by",
        user, agent_id,
    )
    return (row["id"], row["granted_by"]) if row else None


async def live_agent_ids(conn: Connection, *, user: str) -> list[uuid.UUID]:
    """The agents the user holds a live entitlement to now (the conditions of take_use)."""
    rows = await conn.fetch(
        "SELECT agent_id FROM entitlements WHERE user_subject = $1 AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now()) AND (uses_remaining IS NULL OR uses_remaining > 0)",
        user,
    )
    return [row["agent_id"] for row in rows]


async def latest_of(conn: Connection, *, user: str, agent_id: uuid.UUID) -> Entitlement | None:
    """The user's newest entitlement to the agent, live or not: says why a use was refused."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM entitlements WHERE user_subject = $1 AND agent_id = $2"
        " ORDER BY (revoked_at IS NULL) DESC, created_at DESC LIMIT 1",
        user, agent_id,
    )
    return _record(row) if row else None


async def give_back(conn: asyncpg.Connection, execution_id: uuid.UUID) -> bool:
    """Return the use an execution took (once: the execution is marked); True when one was."""
    entitlement_id = await conn.fetchval(
        "UPDATE executions SET use_returned = true WHERE id = $1 AND entitlement_id IS NOT NULL"
        " AND NOT use_returned RETURNING entitlement_id",
        execution_id,
    )
    if entitlement_id is None:
        return False
    # Given back even to a revoked or expired entitlement, so that its counts stay true
    # (NULL + 1 stays NULL: an unlimited entitlement only counts what was consumed).
    await conn.execute(
        "UPDATE entitlements SET uses_remaining = uses_remaining + 1, uses_consumed = uses_consumed - 1"
        " WHERE id = $1",
        entitlement_id,
    )
    return True
