"""SQL for the retention of execution bodies (migration 0010, docs/retention.md).

A sweep deletes the bodies of final executions that finished more than the retention ago:
input, output, the stdin bytes, the raw stdout, the log, and the output violations (they
quote what the task printed). Everything else of the record stays, and the receipts and the
transparency log are never touched: they hold hashes of those bytes, not the bytes.
"""

from __future__ import annotations

import uuid

from executor.storage.database import Connection

BATCH = 500  # rows per statement: one statement's locks and WAL stay small

# Which rows a sweep takes ($1: the retention in seconds). Its first two terms are the predicate
# of the partial index executions_bodies_due, verbatim: the planner uses a partial index only
# when it can prove the query's WHERE implies the index's.
DUE = ("bodies_deleted_at IS NULL AND status IN ('COMPLETED', 'FAILED', 'TIMEOUT', 'CANCELLED')"
       " AND finished_at < now() - make_interval(secs => $1)")


async def delete_due_bodies(conn: Connection, retention_s: float, *, limit: int = BATCH) -> list[uuid.UUID]:
    """Delete the bodies of up to `limit` final executions that finished more than
    `retention_s` ago (oldest first); returns their ids.

    Idempotent and safe to run from several processes at once: a row already swept no longer
    matches, and SKIP LOCKED passes over rows another sweep (or a finishing transaction)
    holds, so each row is counted by the one statement that cleared it."""
    rows = await conn.fetch(
        f"WITH due AS (SELECT id FROM executions WHERE {DUE} ORDER BY finished_at LIMIT $2"
        " FOR UPDATE SKIP LOCKED)"
        " UPDATE executions e SET input = NULL, output = NULL, stdin = NULL, raw_output = NULL, log = NULL,"
        " error_violations = NULL, bodies_deleted_at = now()"
        " FROM due WHERE e.id = due.id RETURNING e.id",
        retention_s, limit,
    )
    return [row["id"] for row in rows]


async def bodies_deleted(conn: Connection, execution_id: uuid.UUID) -> bool:
    """Whether this execution's bodies have been deleted (read again after a body came back empty:
    a sweep may have run between reading the record and reading the body)."""
    deleted = await conn.fetchval("SELECT bodies_deleted_at IS NOT NULL FROM executions WHERE id = $1",
                                  execution_id)
    return bool(deleted)
