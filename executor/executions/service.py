"""Executions as callers see them: submit, read, list, wait, cancel.

Visibility: an operator sees every execution; a service sees its own and its
users' (the executions it submitted for them or whose entitlement it granted);
a user sees their own. Anything else is reported as not found.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.exceptions import RedisError

from executor import ratelimit
from executor.agents.service import Agents
from executor.entitlements.service import Entitlements
from executor.errors import (
    Conflict,
    ExecutionBodiesDeleted,
    Forbidden,
    IdempotencyKeyReused,
    InputInvalid,
    PayloadTooLarge,
    QueueFull,
    QueueUnavailable,
    RateLimited,
    RequestInvalid,
    Throttled,
    TooManyLive,
)
from executor.executions import admission
from executor.executions.finish import Finisher
from executor.executions.shedding import Shedder
from executor.instants import parse_instant
from executor.limits import check_runtime_floor, resolve_limits
from executor.observability import timing
from executor.observability.logs import current_request
from executor.observability.metrics import Metrics
from executor.pagination import encode_cursor, page_filters
from executor.queue.classes import JobQueues
from executor.queue.events import Events, Finished
from executor.queue.stream import QueueStats
from executor.ratelimit import RateLimiter
from executor.records.agents import AgentVersion
from executor.records.executions import (
    ErrorType,
    ExecutionError,
    ExecutionRecord,
    Outcome,
    Status,
    encode_input,
)
from executor.records.principals import Principal, Role
from executor.schemas import off_loop, violations
from executor.settings import Limits, Settings
from executor.storage import executions as execution_sql
from executor.storage import idempotency as idempotency_sql
from executor.storage import retention as retention_sql
from executor.webhooks.targets import check_url

log = logging.getLogger(__name__)

MAX_PAGE = 100
# While ?wait= waits: how often PostgreSQL is read again, with the event subscription unbroken
# (a safety net only: a worker whose publish failed) and without it (an event may be lost).
REREAD_S = 5.0
LOST_EVENT_REREAD_S = 1.0
CHANGE_POLL_S = 1.0  # the longest a state change waits for a lost signal
_STATE_FIELDS = ("id", "status", "error", "started_at", "finished_at")


@dataclass(frozen=True)
class Submission:
    record: ExecutionRecord
    replayed: bool  # an Idempotency-Key replay: the execution an earlier request created
    headers: dict[str, str]  # RateLimit fields
    watch: Watch | None = None  # for wait_final: asked for with submit(watch=True), new executions only


@dataclass
class Watch:
    """A waiter for an execution's end registered before its job was enqueued: while the
    subscription of `generation` stays up, no end of it can have been missed."""

    future: asyncio.Future[Finished | None]
    generation: int


def _encoded_and_checked(schema: Any, value: Any, budget_ms: float,
                         max_bytes: int) -> tuple[bytes, list[dict[str, str]]]:
    """The stdin bytes of an input and its schema's violations (not checked past `max_bytes`:
    the input is refused for its size)."""
    stdin = encode_input(value)
    return stdin, violations(schema, value, budget_ms=budget_ms) if len(stdin) <= max_bytes else []


def _heard(future: asyncio.Future[Finished | None]) -> ExecutionRecord | None:
    """What a waiter was woken with: the worker's timing marks go on this request's timeline;
    the final record when the worker in this process handed it over (else read it)."""
    finished = future.result()
    if finished is not None and finished.timing:
        timing.add(timing.decode(finished.timing))
    timing.mark("woken")
    return finished.record if finished is not None else None


class Executions:
    """Admission and the caller's view of executions; the worker (worker.py) runs them. The
    queue and the events are Redis: jobs for the workers, and word of each execution's end."""

    def __init__(self, db: asyncpg.Pool, queue: JobQueues, events: Events, settings: Settings,
                 finisher: Finisher, limiter: RateLimiter, *, agents: Agents, entitlements: Entitlements,
                 metrics: Metrics | None = None) -> None:
        self.db = db
        self.metrics = metrics if metrics is not None else Metrics()  # counts the refusals for now (Throttled)
        self.limiter = limiter
        self.queue = queue
        self.events = events
        self.settings = settings
        self.finisher = finisher
        self.agents = agents
        self.entitlements = entitlements
        self.shedder = Shedder(queue, settings.max_queue_wait_s)  # admission's bound on queue wait
        self._notices: set[asyncio.Task[None]] = set()  # fire-and-forget notices (tools changed)

    async def submit(self, principal: Principal, body: Any, *, idempotency_key: str | None = None,
                     watch: bool = False) -> Submission:
        """Accept an execution: rate limits, version, input, then one transaction that claims the
        idempotency key, checks the live cap, takes an entitlement use and inserts it PENDING.
        With `watch`, the answer carries a Watch for wait_final (a new execution's only)."""
        request = admission.parse_request(body)
        parties = admission.parties_of(principal, request)
        key = admission.check_idempotency_key(idempotency_key)
        fingerprint = b""
        if key is not None:
            fingerprint = await off_loop(admission.fingerprint, body)
            replay = await self._replay(parties.caller, key, fingerprint)
            if replay is not None:
                return replay
        try:
            # Bounded in time: past EXECUTOR_MAX_QUEUE_WAIT_S of expected wait for a worker (shedding.py),
            # checked first and from a cached view of the queue, so that a refusal costs no round trip.
            shed, expected_wait = await self.shedder.assess(request.priority)
            if shed is not None:
                raise self.refused(self.shed(request.priority, shed))
            decision = await self.limiter.acquire(admission.rate_buckets(principal, parties, self.settings))
            depth = await self.queue.depth()
        except RedisError as exc:  # the same Redis carries the jobs: nothing could run it anyway
            raise QueueUnavailable("Redis (rate limits and the job queue) is unavailable; retry later") from exc
        if depth >= self.settings.max_queue_depth:
            # Bounded: past the depth the answer is "later", not an ever longer wait.
            raise self.refused(QueueFull(
                f"{depth} jobs are waiting or running, the most this service queues; retry later",
                retry_after_s=self.drain_estimate_s(depth)))
        rate_headers = ratelimit.headers(decision)
        if not decision.allowed:
            raise self.refused(RateLimited(f"too many submissions; retry in {decision.retry_after_s:.1f} s",
                                            retry_after_s=decision.retry_after_s, headers=rate_headers))
        agent = await self.agents.for_run(request.agent_id, request.version)
        if agent.image_digest is None:
            raise Conflict(f"agent {agent.agent_id} version {agent.version} has no module yet: "
                           "PUT /v1/agents/{id}/module first")
        # Up to a megabyte of a tenant's input to serialize and check: one trip off the loop.
        stdin, found = await off_loop(_encoded_and_checked, agent.input_schema, request.input,
                                      self.settings.schema_budget_ms, self.settings.max_input_bytes)
        if len(stdin) > self.settings.max_input_bytes:
            raise PayloadTooLarge(f"input is larger than {self.settings.max_input_bytes} bytes")
        if found:
            raise InputInvalid(f"{len(found)} violation(s) of the agent's input schema", errors=found)
        limits = resolve_limits(request.limits, agent.limits, self.settings.max_limits)
        check_runtime_floor(limits, agent.runtime or self.settings.oci_runtime)
        webhook_url = check_url(request.webhook_url, self.settings) if request.webhook_url else None
        timing.mark("admitted")

        record: ExecutionRecord | None
        if key is None and parties.user is None:
            # Nothing to claim, count or take with it: the one INSERT is atomic by itself (two
            # round trips fewer than BEGIN ... COMMIT on the path of every such submission).
            async with self.db.acquire() as conn:
                record = await self._insert(conn, parties, agent, request, stdin, limits, webhook_url)
        else:
            async with self.db.acquire() as conn, conn.transaction():
                if key is not None and not await idempotency_sql.claim(conn, parties.caller, key, fingerprint,
                                                                       self.settings.idempotency_ttl_s):
                    record = None  # a racing request with this key committed first: answer with its execution
                else:
                    record = await self._insert(conn, parties, agent, request, stdin, limits, webhook_url)
                    if key is not None:
                        await idempotency_sql.bind(conn, parties.caller, key, record.id)
        if record is None:
            assert key is not None
            replay = await self._replay(parties.caller, key, fingerprint)
            if replay is None:  # only if the key expired in between
                raise Conflict("the Idempotency-Key is in use by a request that has not finished; retry")
            return replay
        timing.mark("accepted")
        if record.entitlement_id is not None and parties.user is not None:
            # A use taken, maybe the last: MCP sessions re-list (executor/mcp). Off the answer's path.
            task = asyncio.create_task(self.entitlements.changed(parties.user))
            self._notices.add(task)
            task.add_done_callback(self._notices.discard)
        watching = Watch(self.events.waiter(record.id), self.events.generation) if watch else None
        try:
            entry_id = await self._enqueue(record, agent)
        except BaseException:
            if watching is not None:
                self.events.discard(record.id, watching.future)
            raise
        self.shedder.admitted(record.priority, entry_id, expected_wait)  # to learn the estimate's error
        return Submission(record, replayed=False, headers=rate_headers, watch=watching)

    def shed(self, priority: str, retry_after_s: float) -> QueueFull:
        bound = self.shedder.bound_s(priority)
        return QueueFull(f"a {priority} job would wait more than {bound:g} s for a worker, the longest this service "
                         "queues it; retry later", retry_after_s=retry_after_s)

    def refused(self, refusal: Throttled) -> Throttled:
        """`refusal`, counted (executor_admission_refusals_total) on its way to being raised."""
        self.metrics.refused(refusal)
        return refusal

    def drain_estimate_s(self, depth: int) -> float:
        """A Retry-After for a full queue: the excess over what the workers run at once, at ~1 s
        a task, within [1, 30] s. A hint, not a promise."""
        return float(min(30, max(1, (depth - self.settings.max_queue_depth) // self.settings.worker_concurrency + 1)))

    async def _insert(self, conn: asyncpg.Connection, parties: admission.Parties, agent: AgentVersion,
                      request: admission.SubmitRequest, stdin: bytes, limits: Limits,
                      webhook_url: str | None) -> ExecutionRecord:
        service, entitlement_id = parties.service, None
        if parties.user is not None:
            cap = self.settings.max_live_per_user
            if cap and await execution_sql.count_live(conn, parties.owner) >= cap:
                raise self.refused(TooManyLive(
                    f"user {parties.user!r} already has {cap} executions pending or running", retry_after_s=1.0))
            entitlement_id, granted_by = await self.entitlements.take_use(conn, user=parties.user,
                                                                          agent_id=agent.agent_id)
            if service is None and granted_by.startswith("service:"):
                service = granted_by
        return await execution_sql.insert(conn, execution_sql.NewExecution(
            agent_id=agent.agent_id, agent_version=agent.version, owner=parties.owner, input=request.input,
            stdin=stdin, limits=limits, service=service,
            submitted_by=parties.caller if parties.caller != parties.owner else None,
            entitlement_id=entitlement_id, webhook_url=webhook_url, request_id=current_request(),
            priority=request.priority,
        ))

    async def _replay(self, caller: str, key: str, fingerprint: bytes) -> Submission | None:
        stored = await idempotency_sql.find(self.db, caller, key, self.settings.idempotency_ttl_s)
        if stored is None or stored.execution_id is None:
            return None
        if stored.request_sha256 != fingerprint:
            raise IdempotencyKeyReused("this Idempotency-Key was used with a different request body")
        record = await execution_sql.get(self.db, stored.execution_id)
        assert record is not None
        return Submission(record, replayed=True, headers={})

    async def _enqueue(self, record: ExecutionRecord, agent: AgentVersion) -> str:
        """The job's entry id in the queue."""
        try:
            # The request's id rides with the job: the worker's lines for this execution carry it.
            return await self.queue.enqueue(record.id, request_id=current_request(), priority=record.priority)
        except Exception as exc:
            # Nothing will run it: finish it now so that no record stays PENDING for ever.
            log.error("could not enqueue execution %s: %s", record.id, exc)
            error = ExecutionError(ErrorType.PLATFORM_ERROR, "the job queue did not accept the execution")
            await self.finisher.finish(record, Outcome(Status.FAILED, error=error), from_status=Status.PENDING,
                                       agent=agent)
            raise QueueUnavailable("the job queue did not accept the execution; retry later") from exc

    async def get(self, principal: Principal, execution_id: str) -> ExecutionRecord:
        return await execution_sql.get_visible(self.db, principal, execution_id)

    async def list(
        self, principal: Principal, *, status: str | None, agent_id: str | None, cursor: str | None, limit: int,
        user: str | None = None, created_since: str | None = None, created_before: str | None = None,
    ) -> tuple[list[ExecutionRecord], str | None]:
        """A page of what the caller may see: an operator everything, a service its own and its
        users', anyone else their own; `user` narrows to one user's, `created_since`/`created_before`
        to a half-open window of creation time."""
        if status is not None and status not in Status.__members__:
            raise RequestInvalid(f"unknown status {status!r}", errors=[{"pointer": "?status", "detail": "unknown"}])
        agent, before = page_filters(agent_id, cursor)
        limit = max(1, min(limit, MAX_PAGE))
        owner, service = None, None
        if principal.role is Role.SERVICE:
            service = principal.party
        elif principal.role is Role.USER:
            owner = principal.party
        if user is not None:
            if principal.role is Role.USER and user != principal.subject:
                raise Forbidden("a user sees only their own executions")
            owner = f"user:{user}"
        window = (parse_instant(created_since, "?created_since"), parse_instant(created_before, "?created_before"))
        records = await execution_sql.list_page(
            self.db, owner=owner, service=service, status=status, agent_id=agent, before=before, limit=limit,
            created=window,
        )
        next_cursor = encode_cursor(records[-1].created_at, records[-1].id) if len(records) == limit else None
        return records, next_cursor

    async def logs(self, principal: Principal, execution_id: str) -> tuple[bytes, bytes]:
        record = await self.get(principal, execution_id)
        _refuse_deleted_bodies(record)
        log_bytes, raw_output = await execution_sql.get_log(self.db, record.id)
        if log_bytes is None and raw_output is None:
            await self._refuse_if_swept_since(record)
        return log_bytes or b"", raw_output or b""

    async def egress(self, principal: Principal, execution_id: str) -> dict[str, Any]:
        """What the execution's task sent through the egress gateway (docs/egress.md), with the
        digest its receipt binds; `data` is null for an agent without egress, and until the
        execution is final (the gateway keeps the list until the task ends)."""
        record = await self.get(principal, execution_id)
        entries = await execution_sql.egress_of(self.db, record.id) if record.status.is_final else None
        return {"execution_id": str(record.id), "final": record.status.is_final, "data": entries,
                "digest": record.egress}

    async def stdin(self, principal: Principal, execution_id: str) -> bytes:
        """The exact input bytes the task read: what a receipt's input_sha256 is of."""
        record = await self.get(principal, execution_id)
        _refuse_deleted_bodies(record)
        stored = await execution_sql.get_stdin(self.db, record.id)
        if stored is None:
            await self._refuse_if_swept_since(record)
        return stored if stored is not None else encode_input(record.input)

    async def _refuse_if_swept_since(self, record: ExecutionRecord) -> None:
        """A body read back as NULL: the retention sweep may have run since the record was read."""
        if await retention_sql.bodies_deleted(self.db, record.id):
            raise ExecutionBodiesDeleted(f"the bodies of execution {record.id} were deleted (EXECUTOR_RETENTION_S)")

    async def wait_final(self, record: ExecutionRecord, timeout_s: float, *,
                         watch: Watch | None = None) -> ExecutionRecord:
        """The record once final, or as it is after timeout_s. With the Watch of its submission,
        the first read of PostgreSQL is skipped when it cannot tell anything new."""
        if record.status.is_final or timeout_s <= 0:
            if watch is not None:
                self.events.discard(record.id, watch.future)
            return record
        deadline = time.monotonic() + timeout_s
        future = watch.future if watch is not None else self.events.waiter(record.id)
        # The waiter was there before the job, and no event came or was lost since: nothing ended.
        read = watch is None or future.done() or not self.events.unbroken_since(watch.generation)
        if future.done():  # it ended, or the subscription broke, before this wait began
            if (handed := _heard(future)) is not None:
                self.events.discard(record.id, future)
                return handed
            future = self._next_waiter(record.id, future)  # registered before the read below
        generation = watch.generation if watch is not None else self.events.generation
        try:
            while True:
                if read:
                    generation = self.events.generation
                    current = await execution_sql.get(self.db, record.id)
                    timing.mark("reread")
                else:
                    current = record
                read = True
                remaining = deadline - time.monotonic()
                if current is None or current.status.is_final or remaining <= 0:
                    return current or record
                # A finish committed after that read publishes its event after its commit: with
                # the subscription unbroken since before the read, the event comes. Otherwise
                # (or if a worker's publish failed) PostgreSQL is read again soon.
                unbroken = self.events.unbroken_since(generation)
                await asyncio.wait([future], timeout=min(remaining, REREAD_S if unbroken else LOST_EVENT_REREAD_S))
                if future.done():
                    if (handed := _heard(future)) is not None:
                        return handed
                    future = self._next_waiter(record.id, future)
        finally:
            self.events.discard(record.id, future)

    def _next_waiter(self, execution_id: uuid.UUID, spent: asyncio.Future[Finished | None]
                     ) -> asyncio.Future[Finished | None]:
        """A fresh waiter in place of one already woken (which is forgotten, not left in Events)."""
        self.events.discard(execution_id, spent)
        return self.events.waiter(execution_id)

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

    def changes(self, principal: Principal, record: ExecutionRecord) -> StateChanges:
        """The state changes of an execution the caller has read (for a live stream of them)."""
        return StateChanges(self, principal, record)

    async def queue_stats(self) -> QueueStats | None:
        """The job stream's depth and the age of its oldest job; None when Redis does not answer
        (a metrics scrape must not fail for it: /readyz says which dependency is down)."""
        try:
            return await asyncio.wait_for(self.queue.stats(), 2.0)
        except (TimeoutError, RedisError, OSError):
            return None

    async def queue_stats_by_class(self) -> dict[str, QueueStats] | None:
        """queue_stats for each priority class, highest first."""
        try:
            return await asyncio.wait_for(self.queue.stats_by_class(), 2.0)
        except (TimeoutError, RedisError, OSError):
            return None


def _refuse_deleted_bodies(record: ExecutionRecord) -> None:
    """410, not an empty answer, once the retention deleted what was asked for."""
    if record.bodies_deleted_at is not None:
        deleted_at = record.bodies_deleted_at.isoformat().replace("+00:00", "Z")
        raise ExecutionBodiesDeleted(
            f"the input, output, stdout and log of execution {record.id} were deleted at {deleted_at}"
            f" (EXECUTOR_RETENTION_S); its receipt still holds their sha256: GET /v1/executions/{record.id}/receipt")


def state_of(record: ExecutionRecord) -> dict[str, Any]:
    """The fields of a record that make its state: a change to any of them is a state change."""
    body = record.to_dict()
    return {key: body[key] for key in _STATE_FIELDS}


class StateChanges:
    """One execution's next state change: a pub/sub signal, or a re-read at least every
    CHANGE_POLL_S (a signal can be lost). Reads go through Executions.get, so visibility is
    what GET /v1/executions/{id} checks."""

    def __init__(self, executions: Executions, caller: Principal, record: ExecutionRecord) -> None:
        self._executions = executions
        self._events = executions.events
        self._caller = caller
        self.last = record
        self._signal = self._events.change_waiter(record.id)

    async def next(self, timeout_s: float = CHANGE_POLL_S) -> ExecutionRecord | None:
        """The record when its state differs from the last one returned, or None after timeout_s."""
        await asyncio.wait([self._signal], timeout=timeout_s)
        if self._signal.done():
            self._events.discard(self.last.id, self._signal)
            self._signal = self._events.change_waiter(self.last.id)
        current = await self._executions.get(self._caller, str(self.last.id))
        if state_of(current) == state_of(self.last):
            return None
        self.last = current
        return current

    def close(self) -> None:
        self._events.discard(self.last.id, self._signal)
