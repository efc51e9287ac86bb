"""SQL for executions. Every state change is one conditional UPDATE, so a
final state stays final whatever races with it (a replayed job, a cancel, a
restart)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from executor.errors import NotFound
from executor.jsondoc import storable_text
from executor.pricing import Cost
from executor.records.executions import (
    ErrorType,
    ExecutionError,
    ExecutionRecord,
    Outcome,
    Status,
    Usage,
    parse_execution_id,
)
from executor.records.principals import Principal
from executor.settings import Limits
from executor.storage.database import Connection

_COLUMNS = (
    "id, agent_id, agent_version, owner, status, input, limits, output, error_type, error_detail,"
    " error_violations, exit_code, created_at, started_at, finished_at, wall_ms, cpu_ms,"
    " peak_memory_bytes, worker, cancel_requested, pooled, input_bytes, output_bytes, fuel_consumed,"
    " oci_runtime, cost, service, submitted_by, entitlement_id, webhook_url, attempts, bodies_deleted_at,"
    " priority, egress_digest"
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
        usage=Usage(row["wall_ms"], row["cpu_ms"], row["peak_memory_bytes"], row["input_bytes"],
                    row["output_bytes"], row["fuel_consumed"]),
        worker=row["worker"],
        cancel_requested=row["cancel_requested"],
        pooled=row["pooled"],
        oci_runtime=row["oci_runtime"],
        cost=Cost(**row["cost"]) if row["cost"] else None,
        service=row["service"],
        submitted_by=row["submitted_by"],
        entitlement_id=row["entitlement_id"],
        webhook_url=row["webhook_url"],
        attempts=row["attempts"],
        bodies_deleted_at=row["bodies_deleted_at"],
        priority=row["priority"],
        egress=row["egress_digest"],
    )


@dataclass(frozen=True)
class NewExecution:
    agent_id: uuid.UUID
    agent_version: int
    owner: str
    input: Any
    stdin: bytes  # the exact bytes its task will read (a receipt hashes them)
    limits: Limits
    service: str | None = None
    submitted_by: str | None = None
    entitlement_id: uuid.UUID | None = None
    webhook_url: str | None = None
    request_id: str | None = None  # of the request that submitted it: for the logs of a job re-queued
    priority: str = "normal"


async def insert(conn: Connection, new: NewExecution) -> ExecutionRecord:
    """A PENDING execution."""
    row = await conn.fetchrow(
        "INSERT INTO executions (id, agent_id, agent_version, owner, status, input, stdin, input_bytes, limits,"
        " service, submitted_by, entitlement_id, webhook_url, request_id, priority)"
        f" VALUES ($1, $2, $3, $4, 'PENDING', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {_COLUMNS}",
        uuid.uuid4(), new.agent_id, new.agent_version, new.owner, new.input, new.stdin, len(new.stdin),
        new.limits.to_dict(), new.service, new.submitted_by, new.entitlement_id, new.webhook_url, new.request_id,
        new.priority,
    )
    return _record(row)


async def insert_many(conn: asyncpg.Connection, news: list[NewExecution]) -> list[ExecutionRecord]:
    """PENDING executions, in the order given, in one round trip (a pipelined statement per row;
    clock_timestamp(), not the transaction's now(), so that their created_at keep that order)."""
    if not news:
        return []
    rows = await conn.fetchmany(
        "INSERT INTO executions (id, agent_id, agent_version, owner, status, input, stdin, input_bytes, limits,"
        " service, submitted_by, entitlement_id, webhook_url, request_id, priority, created_at)"
        " VALUES ($1, $2, $3, $4, 'PENDING', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, clock_timestamp())"
        f" RETURNING {_COLUMNS}",
        [(uuid.uuid4(), new.agent_id, new.agent_version, new.owner, new.input, new.stdin, len(new.stdin),
          new.limits.to_dict(), new.service, new.submitted_by, new.entitlement_id, new.webhook_url, new.request_id,
          new.priority)
         for new in news],
    )
    return [_record(row) for row in rows]


async def count_live(conn: asyncpg.Connection, owner: str) -> int:
    """The owner's PENDING or RUNNING executions, counted under a per-owner transaction lock
    so that racing submissions see each other."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", owner)
    return int(await conn.fetchval(
        "SELECT count(*) FROM executions WHERE owner = $1 AND status IN ('PENDING', 'RUNNING')", owner))


async def get(db: asyncpg.Pool, execution_id: uuid.UUID) -> ExecutionRecord | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM executions WHERE id = $1", execution_id)
    return _record(row) if row else None


async def get_many(db: Connection, execution_ids: list[uuid.UUID]) -> dict[uuid.UUID, ExecutionRecord]:
    """The executions of these ids that exist, by id, in one query."""
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM executions WHERE id = ANY($1::uuid[])", execution_ids)
    return {row["id"]: _record(row) for row in rows}


async def get_visible(db: asyncpg.Pool, principal: Principal, execution_id: str) -> ExecutionRecord:
    """The execution a URL names, if `principal` may see it: NotFound otherwise, the same
    answer for one that does not exist and one that is someone else's."""
    parsed = parse_execution_id(execution_id)
    record = await get(db, parsed) if parsed is not None else None
    if record is None or not record.visible_to(principal):
        raise NotFound(f"no execution {execution_id!r}")
    return record


async def get_log(db: asyncpg.Pool, execution_id: uuid.UUID) -> tuple[bytes | None, bytes | None]:
    """(stderr log, raw stdout) as kept, for the owner."""
    row = await db.fetchrow("SELECT log, raw_output FROM executions WHERE id = $1", execution_id)
    return (row["log"], row["raw_output"]) if row else (None, None)


async def get_stdin(db: asyncpg.Pool, execution_id: uuid.UUID) -> bytes | None:
    """The exact bytes the task reads on stdin."""
    stdin: bytes | None = await db.fetchval("SELECT stdin FROM executions WHERE id = $1", execution_id)
    return stdin


async def list_page(
    db: asyncpg.Pool,
    *,
    owner: str | None,
    service: str | None,
    status: str | None,
    agent_id: uuid.UUID | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
    created: tuple[datetime | None, datetime | None] = (None, None),
) -> list[ExecutionRecord]:
    """Newest first; `before` is the (created_at, id) of the last record of the previous page;
    `created` a window [since, before) of creation time, either end open when None."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM executions"
        " WHERE ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR status = $2)"
        " AND ($3::uuid IS NULL OR agent_id = $3)"
        " AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))"
        " AND ($7::text IS NULL OR service = $7)"
        " AND ($8::timestamptz IS NULL OR created_at >= $8) AND ($9::timestamptz IS NULL OR created_at < $9)"
        " ORDER BY created_at DESC, id DESC LIMIT $6",
        owner, status, agent_id, before[0] if before else None, before[1] if before else None, limit, service,
        created[0], created[1],
    )
    return [_record(row) for row in rows]


async def claim(db: asyncpg.Pool, execution_id: uuid.UUID, worker: str) -> tuple[ExecutionRecord, bytes] | None:
    """PENDING → RUNNING for this worker (one more start), with the task's stdin bytes; None when
    someone else got there first, or a cancel was asked (whoever asked finishes it)."""
    row = await db.fetchrow(
        "UPDATE executions SET status = 'RUNNING', worker = $2, started_at = now(), attempts = attempts + 1"
        f" WHERE id = $1 AND status = 'PENDING' AND NOT cancel_requested RETURNING {_COLUMNS}, stdin",
        execution_id, worker,
    )
    return (_record(row), row["stdin"]) if row else None


async def put_back(db: asyncpg.Pool, execution_id: uuid.UUID, worker: str, *, count_start: bool) -> bool:
    """RUNNING under `worker` → PENDING again, to be run from the start. `count_start=False` when
    nothing of it ran (its container never started): that start is given back."""
    done = await db.fetchval(
        "UPDATE executions SET status = 'PENDING', worker = NULL, started_at = NULL,"
        " attempts = CASE WHEN $3 THEN attempts ELSE greatest(attempts - 1, 0) END"
        " WHERE id = $1 AND status = 'RUNNING' AND worker = $2 RETURNING true",
        execution_id, worker, count_start,
    )
    return bool(done)


async def finish(
    conn: Connection, execution_id: uuid.UUID, outcome: Outcome, cost: Cost | None, *, from_status: Status,
    worker: str | None = None, egress_digest: dict[str, Any] | None = None,
) -> tuple[ExecutionRecord, bytes | None] | None:
    """`from_status` → a final state, with the stdin bytes its receipt hashes; None when the
    execution was no longer in `from_status` (or, when `worker` is given, no longer that
    worker's: another worker took it over and runs it again)."""
    error, usage = outcome.error, outcome.usage
    row = await conn.fetchrow(
        "UPDATE executions SET status = $2, output = $3, raw_output = $4, log = $5, error_type = $6,"
        " error_detail = $7, error_violations = $8, exit_code = $9,"
        " started_at = COALESCE($10, started_at), finished_at = COALESCE($11, now()),"
        " wall_ms = $12, cpu_ms = $13, peak_memory_bytes = $14, pooled = $16, output_bytes = $17,"
        " fuel_consumed = $18, oci_runtime = $19, cost = $20, egress = $22, egress_digest = $23"
        f" WHERE id = $1 AND status = $15 AND ($21::text IS NULL OR worker = $21) RETURNING {_COLUMNS}, stdin",
        execution_id, outcome.status.value, outcome.output, outcome.raw_output, outcome.log,
        error.type.value if error else None, storable_text(error.detail) if error else None,
        _storable(error.violations) if error else None, outcome.exit_code, outcome.started_at, outcome.finished_at,
        usage.wall_ms, usage.cpu_ms, usage.peak_memory_bytes, from_status.value, outcome.pooled,
        usage.output_bytes, usage.fuel_consumed, outcome.oci_runtime, cost.to_dict() if cost else None, worker,
        outcome.egress, egress_digest,
    )
    return (_record(row), row["stdin"]) if row else None


def _storable(violations: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Violations quote what a task printed: written so that jsonb can hold them."""
    if violations is None:
        return None
    return [{k: storable_text(v) if isinstance(v, str) else v for k, v in item.items()} for item in violations]


async def request_cancel(db: asyncpg.Pool, execution_id: uuid.UUID) -> ExecutionRecord | None:
    """Flag a live execution as cancelled: a PENDING one can no longer be claimed (the caller
    finishes it), a RUNNING one is killed by its worker. None when it is already final."""
    row = await db.fetchrow(
        f"UPDATE executions SET cancel_requested = true WHERE id = $1 AND status IN ('PENDING', 'RUNNING')"
        f" RETURNING {_COLUMNS}",
        execution_id,
    )
    return _record(row) if row else None


async def running_of_worker(db: asyncpg.Pool, worker: str) -> list[ExecutionRecord]:
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM executions WHERE status = 'RUNNING' AND worker = $1", worker)
    return [_record(row) for row in rows]


async def cancelled_pending(db: asyncpg.Pool) -> list[ExecutionRecord]:
    """PENDING executions whose cancel was asked but not finished (the canceller died)."""
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM executions WHERE status = 'PENDING' AND cancel_requested")
    return [_record(row) for row in rows]


async def live_ids(db: asyncpg.Pool) -> set[str]:
    rows = await db.fetch("SELECT id FROM executions WHERE status IN ('PENDING', 'RUNNING')")
    return {str(row["id"]) for row in rows}


@dataclass(frozen=True)
class Pending:
    id: uuid.UUID
    request_id: str | None  # of the request that submitted it
    priority: str


async def pending_ids(db: asyncpg.Pool) -> list[Pending]:
    """Each PENDING execution (not being cancelled), oldest first."""
    rows = await db.fetch("SELECT id, request_id, priority FROM executions"
                          " WHERE status = 'PENDING' AND NOT cancel_requested ORDER BY created_at")
    return [Pending(row["id"], row["request_id"], row["priority"]) for row in rows]


async def egress_of(db: asyncpg.Pool, execution_id: uuid.UUID) -> list[dict[str, Any]] | None:
    """What an execution sent through the egress gateway, in order; None: no egress (or not final yet)."""
    entries: list[dict[str, Any]] | None = await db.fetchval(
        "SELECT egress FROM executions WHERE id = $1", execution_id)
    return entries
