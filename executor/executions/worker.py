"""The worker half: take jobs from the stream, run each task, record its end.

A job may be delivered more than once; the conditional claim in PostgreSQL
(PENDING → RUNNING) lets exactly one delivery run it, and the conditional
finish (RUNNING under this worker → final) lets exactly one end be written.

A worker admits a job only within its capacity: a free slot of
EXECUTOR_WORKER_CONCURRENCY, and room in EXECUTOR_WORKER_MEMORY_MB for the task's
memory limit. The jobs it holds are renewed; those of a worker that died are
reclaimed by another (executions/leases.py), which runs the execution again from
the start: a task is sealed (no network, no host path, a fresh container), so a
cut-off run leaves nothing behind but its container, removed when its own host's
worker comes back. After EXECUTOR_MAX_ATTEMPTS starts it ends as platform_error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from executor import faults, schemas
from executor.errors import ExecutorError
from executor.executions.finish import Finisher
from executor.executions.leases import Leases
from executor.executions.outcome import outcome_of
from executor.executions.progress import StderrRelay
from executor.executions.tasks import build_task, fuel_budget, interpret
from executor.observability import timing
from executor.observability.logs import bind_execution, bind_request
from executor.queue.classes import JobQueues
from executor.queue.events import Events
from executor.queue.stream import Job
from executor.records.agents import AgentVersion
from executor.records.executions import (
    ErrorType,
    ExecutionError,
    ExecutionRecord,
    Outcome,
    Status,
)
from executor.settings import Settings
from executor.storage import agents as agent_sql
from executor.storage import executions as execution_sql
from runtimes.container import ContainerRuntime
from runtimes.pool import ContainerPool

log = logging.getLogger(__name__)

_READ_BLOCK_MS = 1000
# PostgreSQL unreachable (a restart, a failover): retried with bounded backoff. A claim or a
# finish repeated after a lost answer is harmless: both are conditional.
_DB_DOWN = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError)


def _db_retry(within_s: float) -> AsyncRetrying:
    return AsyncRetrying(retry=retry_if_exception_type(_DB_DOWN), wait=wait_exponential(multiplier=0.2, max=5.0),
                         stop=stop_after_delay(within_s), reraise=True, before_sleep=_warn_db_down)


def _warn_db_down(state: RetryCallState) -> None:
    log.warning("PostgreSQL unavailable (attempt %d): %s", state.attempt_number,
                state.outcome.exception() if state.outcome else None)


@dataclass
class _Running:
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    final: ExecutionRecord | None = None  # its end, written here: the ack announces it


class Worker:
    def __init__(
        self, db: asyncpg.Pool, queue: JobQueues, events: Events, runtime: ContainerRuntime, settings: Settings,
        finisher: Finisher, *, pool: ContainerPool | None = None,
    ) -> None:
        self.db = db
        self.queue = queue
        self.events = events
        self.runtime = runtime
        self.containers = runtime.launcher  # this instance's containers: its orphans are removed here
        self.pool = pool  # the runtime's claimer, when it has one: started and closed with the worker
        self.settings = settings
        self.finisher = finisher
        self.instance_id = self.containers.instance_id
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._memory = asyncio.Condition()
        self._memory_used_mb = 0
        self._held: dict[str, uuid.UUID] = {}  # stream entry → execution, for the jobs this worker runs
        self._reclaimed: collections.deque[Job] = collections.deque()  # taken over, waiting for a slot
        self._claimed: set[uuid.UUID] = set()  # executions this process runs now (claimed, not finished)
        self._running: dict[uuid.UUID, _Running] = {}
        self._versions: dict[tuple[uuid.UUID, int], AgentVersion] = {}  # immutable once written
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.leases = Leases(db, queue.client, queue, self.instance_id, visibility_s=settings.job_visibility_s,
                             held=lambda: list(self._held), free_slots=self._free_slots, take=self._take_reclaimed)

    async def start(self) -> None:
        self.events.on_cancel(self._on_cancel)
        await self.queue.ensure_group()
        await self.recover()
        if self.pool:
            self.pool.start()
        await self.leases.start()
        self._loop_task = asyncio.create_task(self._consume(), name="worker-consume")
        self._sweep_task = asyncio.create_task(self._sweep_orphans(), name="worker-orphans")

    async def recover(self) -> None:
        """Clean up after a previous life of this instance (a crash or a kill)."""
        failed = []
        for record in await execution_sql.running_of_worker(self.db, self.instance_id):
            if await self._take_over(record, "the worker restarted while the task was running"):
                failed.append(record.id)
        # A cancel whose caller died between flagging the execution and finishing it.
        never_started = ExecutionError(ErrorType.CANCELLED, "cancelled before it started")
        for record in await execution_sql.cancelled_pending(self.db):
            if await self.finisher.finish(record, Outcome(Status.CANCELLED, error=never_started),
                                          from_status=Status.PENDING):
                failed.append(record.id)
        for execution_id in failed:
            await self._publish(self.events.publish_finished(execution_id))
        # No task of this life runs yet: every container of this instance is from its previous
        # life, even one whose execution was just put back to run again.
        removed = await self.containers.remove_orphans(set())
        # The jobs the previous life held are done with: what they were for is final now, or
        # PENDING again and given a new entry, as is whatever else PENDING has none (a Redis
        # restart, a crash between insert and enqueue). Dropped, not left in the stream for ever.
        jobs = await self.leases.reconcile(whole=True, dead_consumer=self.instance_id)
        if failed or removed or jobs.dropped or jobs.enqueued:
            log.warning(
                "recovered: %d execution(s) finished (platform_error after their last start, or cancelled),"
                " %d container(s) removed, %d job(s) of the previous life dropped, %d re-enqueued"
                " (put back to run again, or missed by the stream)",
                len(failed), len(removed), jobs.dropped, jobs.enqueued,
            )

    async def stop(self) -> None:
        """Stop taking jobs, let the running tasks finish, remove their containers."""
        self._stopping.set()
        for task in (self._loop_task, self._sweep_task):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.leases.stop()
        if self.pool:
            await self.pool.close()
        await self.containers.drain()

    async def _sweep_orphans(self) -> None:
        """Now and then, remove this instance's task containers whose execution is over: what a
        failed removal left (the engine restarted mid-run, for one)."""
        while True:
            await asyncio.sleep(max(10.0, self.settings.job_visibility_s))
            try:
                removed = await self.containers.remove_orphans(lambda: execution_sql.live_ids(self.db),
                                                               keep_pooled=True)
                if removed:
                    log.warning("removed %d container(s) left behind by finished executions", len(removed))
            except Exception as exc:  # the engine or PostgreSQL is away: next round
                log.warning("orphan sweep failed: %s", exc)

    async def _consume(self) -> None:
        """One job per free slot: a worker never takes more than it can run now."""
        backoff = 0.1
        while not self._stopping.is_set():
            await self._slots.acquire()
            if self._reclaimed:  # a dead worker's job first: it has waited longest
                self._spawn(self._reclaimed.popleft())
                continue
            try:
                jobs = await self.queue.read(self.instance_id, count=1, block_ms=_READ_BLOCK_MS)
                backoff = 0.1
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception as exc:
                self._slots.release()
                log.error("reading the job stream failed (retrying in %.1f s): %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not jobs:
                self._slots.release()
                continue
            self._spawn(jobs[0])

    def _spawn(self, job: Job) -> None:
        """Handle a job in a slot already acquired for it."""
        self._held[job.entry_id] = job.execution_id
        task = asyncio.create_task(self._handle(job, time.time()), name=f"execution-{job.execution_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _free_slots(self) -> int:
        """How many jobs of dead workers this one takes over now: as many as it has slots, less
        those already waiting for one. Not less the tasks running: a saturated worker always
        has its slots busy, and its dead peer's jobs would wait for the load to end (each
        taken over runs at the next free slot, before any new job)."""
        return 0 if self._stopping.is_set() else self.settings.worker_concurrency - len(self._reclaimed)

    async def _take_reclaimed(self, job: Job) -> bool:
        """A job taken over from a dead worker: held (so renewed) from now, and run at this
        worker's next free slot, before any new job. Under load every slot is busy or waiting
        on a read, and a reclaimed job must not wait for the load to end."""
        if self._stopping.is_set():
            return False
        self._held[job.entry_id] = job.execution_id
        self._reclaimed.append(job)
        return True

    async def _handle(self, job: Job, read_at: float) -> None:
        running = self._running.setdefault(job.execution_id, _Running())
        done = False
        try:
            with bind_execution(job.execution_id), bind_request(job.request_id), \
                    timing.timeline("read", at=read_at) as marks:
                done = await self._run(job, running)
            if done:
                sent = timing.encode(marks) if self.settings.server_timing else None
                finished = None
                if running.final is not None:
                    # Committed: a request of this process waiting for it is answered now; the
                    # others hear the "finished" event, in the ack's transaction (one round trip).
                    self.events.finished_here(job.execution_id, running.final, sent)
                    finished = self.events.finished_message(job.execution_id, sent)
                await self.queue.ack(job.entry_id, publish=finished)
        except Exception:
            log.exception("execution %s: job failed; left for another worker to reclaim", job.execution_id)
        finally:
            # Not acked: renewed by nobody from now on, so reclaimed after the visibility timeout.
            self._held.pop(job.entry_id, None)
            self._running.pop(job.execution_id, None)
            self._slots.release()

    async def _run(self, job: Job, running: _Running) -> bool:
        """Run the job's execution if it is ours to run; True when the job is done with (ack it)."""
        execution_id = job.execution_id
        if job.reclaimed:
            async for attempt in _db_retry(self.settings.job_visibility_s * 4):
                with attempt:
                    record = await execution_sql.get(self.db, execution_id)
            if record is None or record.status.is_final:
                return True
            if record.status is Status.RUNNING and (record.worker != self.instance_id
                                                    or execution_id not in self._claimed):
                await self._take_over(record, f"its worker {record.worker} died while the task was running")
        async with self._memory_for(execution_id) as admitted:
            if not admitted:
                return True
            faults.point("before_claim")
            async for attempt in _db_retry(self.settings.job_visibility_s * 4):
                with attempt:
                    claimed = await execution_sql.claim(self.db, execution_id, self.instance_id)
            if claimed is None:
                return True  # already claimed, cancelled or finished: this delivery is a duplicate
            record, stdin = claimed
            timing.mark("claimed")
            self._claimed.add(execution_id)
            try:
                return await self._run_claimed(record, stdin, running)
            finally:
                self._claimed.discard(execution_id)

    async def _run_claimed(self, record: ExecutionRecord, stdin: bytes | None, running: _Running) -> bool:
        # Only followers of its state care: the task does not wait for the round trip to Redis.
        self._publish_soon(self.events.publish_state(record.id, Status.RUNNING.value))
        outcome, agent, launch_failure = await self._execute(record, stdin, running)
        faults.point("after_output")
        if outcome is None:  # the engine failed it before anything ran: to be run again
            # An engine away is waited for (that start is not counted); an engine error is
            # retried within the attempts, as it may be this task's own.
            counted = launch_failure == "engine_error"
            if await execution_sql.put_back(self.db, record.id, self.instance_id, count_start=counted):
                await self._publish(self.events.publish_state(record.id, Status.PENDING.value))
                log.warning("execution %s: the Docker engine could not start it; put back to run later", record.id)
                return False  # unacked and no longer renewed: reclaimed after the visibility timeout
            return True
        running.final = await self._finish(record, outcome, agent)
        timing.mark("finished")
        return True

    async def _finish(self, record: ExecutionRecord, outcome: Outcome,
                      agent: AgentVersion | None) -> ExecutionRecord | None:
        """Write the task's end. PostgreSQL being away is waited for; any other failure would
        fail again, and going back to the queue would only run the task again into it, so the
        execution ends now as platform_error (not charged), with the reason in the log."""
        try:
            return await self._finish_retrying(record, outcome, agent, refusable=True)
        except Exception as exc:
            log.exception("execution %s: its outcome could not be recorded; it ends as platform_error", record.id)
            error = ExecutionError(ErrorType.PLATFORM_ERROR, f"the task's outcome could not be recorded "
                                   f"({type(exc).__name__}); the task was not run again")
            fallback = Outcome(Status.FAILED, error=error, exit_code=outcome.exit_code, started_at=outcome.started_at,
                               finished_at=outcome.finished_at, usage=outcome.usage, pooled=outcome.pooled,
                               oci_runtime=outcome.oci_runtime)
            # Should this fail too, the job is left to be reclaimed (bounded by max_attempts).
            return await self._finish_retrying(record, fallback, agent)

    async def _finish_retrying(self, record: ExecutionRecord, outcome: Outcome, agent: AgentVersion | None, *,
                               refusable: bool = False) -> ExecutionRecord | None:
        async for attempt in _db_retry(max(120.0, self.settings.job_visibility_s * 4)):
            with attempt:
                if refusable:
                    faults.refusal("finish_refused")
                finished = await self.finisher.finish(record, outcome, from_status=Status.RUNNING, agent=agent,
                                                      worker=self.instance_id)
        return finished

    async def _execute(self, record: ExecutionRecord, stdin: bytes | None,
                       running: _Running) -> tuple[Outcome | None, AgentVersion | None, str | None]:
        """The task's outcome; None when the engine failed it before it started, to run it again."""
        agent = None
        try:
            agent = await self._version(record.agent_id, record.agent_version)
            spec = build_task(agent, record, stdin, self.settings)
            # Its stderr, live, to whoever follows the execution (executions/progress.py).
            relay = StderrRelay(functools.partial(self.events.publish_stderr, record.id), max_bytes=spec.max_log_bytes)
            try:
                result = await self.runtime.run(spec, running.cancel, on_stderr=relay.feed)
            finally:
                await relay.close()
            timing.add(result.marks)
            if result.launch_failure == "unreachable" or (
                    result.launch_failure == "engine_error" and record.attempts < self.settings.max_attempts):
                return None, agent, result.launch_failure
            # Parsing and checking up to 1 MiB of a tenant's output: on the validation threads.
            outcome = await schemas.off_loop(outcome_of, interpret(agent, result), agent.output_schema,
                                             fuel_budget=fuel_budget(agent, self.settings),
                                             schema_budget_ms=self.settings.schema_budget_ms)
            timing.mark("checked")
            return outcome, agent, None
        except Exception as exc:
            log.exception("execution %s: platform failure", record.id)
            error = ExecutionError(ErrorType.PLATFORM_ERROR, f"platform failure: {exc}")
            return Outcome(Status.FAILED, error=error), agent, None

    def _publish_soon(self, event: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._publish(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, event: Awaitable[None]) -> None:
        """Events are hints (waiters re-read PostgreSQL): Redis being down must not stop a run."""
        try:
            await event
        except Exception as exc:
            log.warning("could not publish an event: %s", exc)

    async def _take_over(self, record: ExecutionRecord, why: str) -> bool:
        """A RUNNING execution whose worker died: back to PENDING to run again, or, after
        max_attempts starts, its end as platform_error. True when it ended here."""
        assert record.worker is not None
        if record.attempts < self.settings.max_attempts:
            if await execution_sql.put_back(self.db, record.id, record.worker, count_start=True):
                log.warning("execution %s: %s; it runs again (start %d of at most %d)", record.id, why,
                            record.attempts + 1, self.settings.max_attempts)
                await self._publish(self.events.publish_state(record.id, Status.PENDING.value))
            return False
        error = ExecutionError(ErrorType.PLATFORM_ERROR, f"{why} (started {record.attempts} time(s), the most allowed)")
        return await self.finisher.finish(record, Outcome(Status.FAILED, error=error), from_status=Status.RUNNING,
                                          worker=record.worker) is not None

    @contextlib.asynccontextmanager
    async def _memory_for(self, execution_id: uuid.UUID) -> AsyncIterator[bool]:
        """Wait for room in the memory budget for this execution's limit (a task bigger than the
        whole budget runs alone); yields False when the execution is gone."""
        if not self.settings.worker_memory_mb:
            yield True
            return
        record = await execution_sql.get(self.db, execution_id)
        if record is None:
            yield False
            return
        need = record.limits.memory_mb
        async with self._memory:
            await self._memory.wait_for(lambda: self._memory_used_mb == 0
                                        or self._memory_used_mb + need <= self.settings.worker_memory_mb)
            self._memory_used_mb += need
        try:
            yield True
        finally:
            async with self._memory:
                self._memory_used_mb -= need
                self._memory.notify_all()

    @property
    def running(self) -> int:
        return len(self._running)

    async def _version(self, agent_id: uuid.UUID, version: int) -> AgentVersion:
        found = self._versions.get((agent_id, version))
        if found is None:
            found = await agent_sql.get_version(self.db, agent_id, version)
            if found is None:
                raise ExecutorError(f"agent {agent_id} version {version} is gone")
            if len(self._versions) > 1024:
                self._versions.clear()
            self._versions[(agent_id, version)] = found
        return found

    async def _on_cancel(self, execution_id: uuid.UUID) -> None:
        running = self._running.get(execution_id)
        if running is not None:
            running.cancel.set()
