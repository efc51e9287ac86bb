"""SQL for executions. Every state change is one conditional UPDATE, so a
final state stays final whatever races with it (a replayed job, a cancel, a
restart)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from executor.executions.records import (
    ErrorType,
    ExecutionError,
    ExecutionRecord,
    Outcome,
    Status,
    Usage,
)
from executor.settings import Limits

_COLUMNS = (
    "id, agent_id, agent_version, owner, status, input, limits, output, error_type, error_detail,"
    " error_violations, exit_code, created_at, started_at, finished_at, wall_ms, cpu_ms,"
    " peak_memory_bytes, worker, cancel_requested, pooled"
)


def _record(row: asyncpg.Record) -> ExecutionRecord:
    error = None
    if row["error_type"]:
        error = ExecutionError(ErrorType(row["error_type"]), row["error_detail"] or "", row["error_violations"])
    return ExecutionRecord(
        id=row["id"],
        agent_id=row["agent_id"],
        agent_version=row["agent_version"],
        owner=row["owner"],
        status=Status(row["status"]),
        input=row["input"],
        limits=Limits(**row["limits"]),
        created_at=row["created_at"],
        output=row["output"],
        error=error,
        exit_code=row["exit_code"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        usage=Usage(row["wall_ms"], row["cpu_ms"], row["peak_memory_bytes"]),
        worker=row["worker"],
        cancel_requested=row["cancel_requested"],
        pooled=row["pooled"],
    )


async def insert(
    db: asyncpg.Pool, *, agent_id: uuid.UUID, agent_version: int, owner: str, input: Any, limits: Limits
) -> ExecutionRecord:
    row = await db.fetchrow(
        "INSERT INTO executions (id, agent_id, agent_version, owner, status, input, limits)"
        f" VALUES ($1, $2, $3, $4, 'PENDING', $5, $6) RETURNING {_COLUMNS}",
        uuid.uuid4(), agent_id, agent_version, owner, input, limits.to_dict(),
    )
    return _record(row)


async def get(db: asyncpg.Pool, execution_id: uuid.UUID) -> ExecutionRecord | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM executions WHERE id = $1", execution_id)
    return _record(row) if row else None


async def get_log(db: asyncpg.Pool, execution_id: uuid.UUID) -> tuple[bytes | None, bytes | None]:
    """(stderr log, raw stdout) as kept, for the owner."""
    row = await db.fetchrow("SELECT log, raw_output FROM executions WHERE id = $1", execution_id)
    return (row["log"], row["raw_output"]) if row else (None, None)


async def list_page(
    db: asyncpg.Pool,
    *,
    owner: str | None,
    status: str | None,
    agent_id: uuid.UUID | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ExecutionRecord]:
    """Newest first; `before` is the (created_at, id) of the last record of the previous page."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM executions"
        " WHERE ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR status = $2)"
        " AND ($3::uuid IS NULL OR agent_id = $3)"
        " AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))"
        " ORDER BY created_at DESC, id DESC LIMIT $6",
        owner, status, agent_id, before[0] if before else None, before[1] if before else None, limit,
    )
    return [_record(row) for row in rows]


async def claim(db: asyncpg.Pool, execution_id: uuid.UUID, worker: str) -> ExecutionRecord | None:
    """PENDING → RUNNING for this worker; None when someone else got there first."""
    row = await db.fetchrow(
        "UPDATE executions SET status = 'RUNNING', worker = $2, started_at = now()"
        f" WHERE id = $1 AND status = 'PENDING' RETURNING {_COLUMNS}",
        execution_id, worker,
    )
    return _record(row) if row else None


async def finish(
    db: asyncpg.Pool, execution_id: uuid.UUID, outcome: Outcome, *, from_status: Status = Status.RUNNING
) -> ExecutionRecord | None:
    """`from_status` (RUNNING) → a final state; None when the execution was no longer in it."""
    error = outcome.error
    row = await db.fetchrow(
        "UPDATE executions SET status = $2, output = $3, raw_output = $4, log = $5, error_type = $6,"
        " error_detail = $7, error_violations = $8, exit_code = $9,"
        " started_at = COALESCE($10, started_at), finished_at = COALESCE($11, now()),"
        " wall_ms = $12, cpu_ms = $13, peak_memory_bytes = $14, pooled = $16"
        f" WHERE id = $1 AND status = $15 RETURNING {_COLUMNS}",
        execution_id, outcome.status.value, outcome.output, outcome.raw_output, outcome.log,
        error.type.value if error else None, error.detail if error else None,
        error.violations if error else None, outcome.exit_code, outcome.started_at, outcome.finished_at,
        outcome.usage.wall_ms, outcome.usage.cpu_ms, outcome.usage.peak_memory_bytes, from_status.value,
        outcome.pooled,
    )
    return _record(row) if row else None


async def request_cancel(db: asyncpg.Pool, execution_id: uuid.UUID) -> ExecutionRecord | None:
    """A PENDING execution is cancelled at once; a RUNNING one is flagged for its worker."""
    row = await db.fetchrow(
        "UPDATE executions SET cancel_requested = true,"
        " status = CASE WHEN status = 'PENDING' THEN 'CANCELLED' ELSE status END,"
        " error_type = CASE WHEN status = 'PENDING' THEN 'cancelled' ELSE error_type END,"
        " error_detail = CASE WHEN status = 'PENDING' THEN 'cancelled before it started' ELSE error_detail END,"
        " finished_at = CASE WHEN status = 'PENDING' THEN now() ELSE finished_at END"
        f" WHERE id = $1 AND status IN ('PENDING', 'RUNNING') RETURNING {_COLUMNS}",
        execution_id,
    )
    return _record(row) if row else None


async def fail_running_of_worker(db: asyncpg.Pool, worker: str, detail: str) -> list[uuid.UUID]:
    """Finish as FAILED platform_error every execution this worker had RUNNING (it restarted)."""
    rows = await db.fetch(
        "UPDATE executions SET status = 'FAILED', error_type = 'platform_error', error_detail = $2,"
        " finished_at = now() WHERE status = 'RUNNING' AND worker = $1 RETURNING id",
        worker, detail,
    )
    return [row["id"] for row in rows]


async def live_ids(db: asyncpg.Pool) -> set[str]:
    rows = await db.fetch("SELECT id FROM executions WHERE status IN ('PENDING', 'RUNNING')")
    return {str(row["id"]) for row in rows}


async def pending_ids(db: asyncpg.Pool) -> list[uuid.UUID]:
    rows = await db.fetch("SELECT id FROM executions WHERE status = 'PENDING' ORDER BY created_at")
    return [row["id"] for row in rows]
