"""Executions as callers see them: submit, read, list, wait, cancel.

Visibility: an operator sees every execution; anyone else sees only their
own, and another caller's execution is reported as not found.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from executor.agents import service as agents
from executor.errors import Conflict, InputInvalid, NotFound, PayloadTooLarge, Problem, RequestInvalid
from executor.executions.finish import Finisher
from executor.executions.records import ErrorType, ExecutionError, ExecutionRecord, Outcome, Status
from executor.limits import resolve_limits
from executor.queue.events import Events
from executor.queue.stream import JobQueue
from executor.schemas import violations
from executor.settings import Settings
from executor.storage import executions as execution_sql
from executor.tokens import Principal, Role

log = logging.getLogger(__name__)

_SUBMIT_FIELDS = {"agent_id", "version", "input", "limits"}
MAX_PAGE = 100


class QueueUnavailable(Problem):
    slug, status, title = "queue_unavailable", 503, "The job queue is unavailable"


def owner_of(principal: Principal) -> str:
    return f"{principal.role.value}:{principal.subject}"


def encode_input(value: Any) -> bytes:
    """The exact bytes a task reads on stdin."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Executions:
    def __init__(self, db: asyncpg.Pool, queue: JobQueue, events: Events, settings: Settings,
                 finisher: Finisher) -> None:
        self.db = db
        self.queue = queue
        self.events = events
        self.settings = settings
        self.finisher = finisher

    async def submit(self, principal: Principal, body: Any) -> ExecutionRecord:
        if not isinstance(body, dict):
            raise RequestInvalid("the body must be a JSON object", errors=[{"pointer": "", "detail": "not an object"}])
        unknown = sorted(set(body) - _SUBMIT_FIELDS)
        if unknown:
            raise RequestInvalid(
                f"unknown field(s): {', '.join(unknown)}",
                errors=[{"pointer": f"/{k}", "detail": "unknown field"} for k in unknown],
            )
        if not isinstance(body.get("agent_id"), str):
            raise RequestInvalid("agent_id is required", errors=[{"pointer": "/agent_id", "detail": "required string"}])
        version = body.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise RequestInvalid("version must be an integer", errors=[{"pointer": "/version", "detail": "integer"}])
        if "input" not in body:
            raise RequestInvalid("input is required", errors=[{"pointer": "/input", "detail": "required"}])
        agent = await agents.get(self.db, body["agent_id"], version)
        if agent.image_digest is None:
            raise Conflict(f"agent {agent.agent_id} version {agent.version} has no module yet: "
                           "PUT /v1/agents/{id}/module first")
        stdin = encode_input(body["input"])
        if len(stdin) > self.settings.max_input_bytes:
            raise PayloadTooLarge(f"input is larger than {self.settings.max_input_bytes} bytes")
        found = violations(agent.input_schema, body["input"])
        if found:
            raise InputInvalid(f"{len(found)} violation(s) of the agent's input schema", errors=found)
        limits = resolve_limits(body.get("limits"), agent.limits, self.settings.max_limits)

        record = await execution_sql.insert(
            self.db, agent_id=agent.agent_id, agent_version=agent.version, owner=owner_of(principal),
            input=body["input"], stdin=stdin, limits=limits,
        )
        try:
            await self.queue.enqueue(record.id)
        except Exception as exc:
            # Nothing will run it: finish it now so that no record stays PENDING for ever.
            log.error("could not enqueue execution %s: %s", record.id, exc)
            error = ExecutionError(ErrorType.PLATFORM_ERROR, "the job queue did not accept the execution")
            await self.finisher.finish(record, Outcome(Status.FAILED, error=error), from_status=Status.PENDING,
                                       agent=agent)
            raise QueueUnavailable("the job queue did not accept the execution; retry later") from exc
        return record

    async def get(self, principal: Principal, execution_id: str) -> ExecutionRecord:
        try:
            parsed = uuid.UUID(execution_id)
        except ValueError:
            raise NotFound(f"no execution {execution_id!r}") from None
        record = await execution_sql.get(self.db, parsed)
        if record is None or not self._visible(principal, record):
            raise NotFound(f"no execution {execution_id!r}")
        return record

    def _visible(self, principal: Principal, record: ExecutionRecord) -> bool:
        return principal.role is Role.OPERATOR or record.owner == owner_of(principal)

    async def list(
        self, principal: Principal, *, status: str | None, agent_id: str | None, cursor: str | None, limit: int
    ) -> tuple[list[ExecutionRecord], str | None]:
        if status is not None and status not in Status.__members__:
            raise RequestInvalid(f"unknown status {status!r}", errors=[{"pointer": "/status", "detail": "unknown"}])
        try:
            agent = uuid.UUID(agent_id) if agent_id else None
            before = _decode_cursor(cursor) if cursor else None
        except ValueError:
            raise RequestInvalid("bad agent_id or cursor") from None
        limit = max(1, min(limit, MAX_PAGE))
        owner = None if principal.role is Role.OPERATOR else owner_of(principal)
        records = await execution_sql.list_page(
            self.db, owner=owner, status=status, agent_id=agent, before=before, limit=limit
        )
        next_cursor = _encode_cursor(records[-1]) if len(records) == limit else None
        return records, next_cursor

    async def logs(self, principal: Principal, execution_id: str) -> tuple[bytes, bytes]:
        record = await self.get(principal, execution_id)
        log_bytes, raw_output = await execution_sql.get_log(self.db, record.id)
        return log_bytes or b"", raw_output or b""

    async def stdin(self, principal: Principal, execution_id: str) -> bytes:
        """The exact input bytes the task read: what a receipt's input_sha256 is of."""
        record = await self.get(principal, execution_id)
        stored = await execution_sql.get_stdin(self.db, record.id)
        return stored if stored is not None else encode_input(record.input)

    async def wait_final(self, record: ExecutionRecord, timeout_s: float) -> ExecutionRecord:
        """The record once final, or as it is after timeout_s."""
        if record.status.is_final or timeout_s <= 0:
            return record
        deadline = time.monotonic() + timeout_s
        future = self.events.waiter(record.id)
        try:
            while True:
                current = await execution_sql.get(self.db, record.id)
                remaining = deadline - time.monotonic()
                if current is None or current.status.is_final or remaining <= 0:
                    return current or record
                # Re-read PostgreSQL at least every second: an event can be lost.
                await asyncio.wait([future], timeout=min(remaining, 1.0))
                if future.done():
                    future = self.events.waiter(record.id)
        finally:
            self.events.discard(record.id, future)

    async def cancel(self, principal: Principal, execution_id: str) -> ExecutionRecord:
        record = await self.get(principal, execution_id)
        updated = await execution_sql.request_cancel(self.db, record.id)
        if updated is None:  # already final: cancelling is a no-op
            return record
        if updated.status is Status.RUNNING:
            await self.events.publish_cancel(record.id)
            return updated
        # Flagged while PENDING, it can no longer be claimed: its end (and receipt) is ours to write.
        error = ExecutionError(ErrorType.CANCELLED, "cancelled before it started")
        final = await self.finisher.finish(updated, Outcome(Status.CANCELLED, error=error), from_status=Status.PENDING)
        await self.events.publish_finished(record.id)
        return final or await self.get(principal, execution_id)


def _encode_cursor(record: ExecutionRecord) -> str:
    raw = f"{record.created_at.isoformat()}|{record.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    created, _, ident = raw.partition("|")
    return datetime.fromisoformat(created), uuid.UUID(ident)
