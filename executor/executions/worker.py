"""The worker half: take jobs from the stream, run each task once, record its end.

A job may be delivered more than once; the conditional claim in PostgreSQL
(PENDING → RUNNING) lets exactly one delivery run it, and the conditional
finish (RUNNING → final) lets exactly one end be written.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

import asyncpg

from executor.agents.records import AgentVersion
from executor.errors import ExecutorError
from executor.executions.finish import Finisher
from executor.executions.outcome import outcome_of
from executor.executions.records import ErrorType, ExecutionError, ExecutionRecord, Outcome, Status
from executor.executions.service import encode_input
from executor.queue.events import Events
from executor.queue.stream import Job, JobQueue
from executor.settings import Settings
from executor.storage import agents as agent_sql
from executor.storage import executions as execution_sql
from runtimes import wasm
from runtimes.base import TaskSpec
from runtimes.container import ContainerRuntime
from runtimes.pool import MAX_IDLE_AGE_S

log = logging.getLogger(__name__)

_READ_BLOCK_MS = 1000


@dataclass
class _Running:
    cancel: asyncio.Event = field(default_factory=asyncio.Event)


class Worker:
    def __init__(
        self, db: asyncpg.Pool, queue: JobQueue, events: Events, runtime: ContainerRuntime, settings: Settings,
        finisher: Finisher,
    ) -> None:
        self.db = db
        self.queue = queue
        self.events = events
        self.runtime = runtime
        self.settings = settings
        self.finisher = finisher
        self.instance_id = runtime.instance_id
        self._slots = asyncio.Semaphore(settings.worker_concurrency)
        self._running: dict[uuid.UUID, _Running] = {}
        self._versions: dict[tuple[uuid.UUID, int], AgentVersion] = {}  # immutable once written
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self.events.on_cancel(self._on_cancel)
        await self.queue.ensure_group()
        await self.recover()
        if self.runtime.pool:
            self.runtime.pool.start()
        self._loop_task = asyncio.create_task(self._consume(), name="worker-consume")

    async def recover(self) -> None:
        """Clean up after a previous life of this instance (a crash or a kill)."""
        await self.queue.forget_consumer(self.instance_id)
        failed = []
        restarted = ExecutionError(ErrorType.PLATFORM_ERROR, "the worker restarted while the task was running")
        for record in await execution_sql.running_of_worker(self.db, self.instance_id):
            if await self.finisher.finish(record, Outcome(Status.FAILED, error=restarted), from_status=Status.RUNNING):
                failed.append(record.id)
        # A cancel whose caller died between flagging the execution and finishing it.
        never_started = ExecutionError(ErrorType.CANCELLED, "cancelled before it started")
        for record in await execution_sql.cancelled_pending(self.db):
            if await self.finisher.finish(record, Outcome(Status.CANCELLED, error=never_started),
                                          from_status=Status.PENDING):
                failed.append(record.id)
        for execution_id in failed:
            await self.events.publish_finished(execution_id)
        removed = await self.runtime.remove_orphans(await execution_sql.live_ids(self.db))
        # Whatever is PENDING may have missed the stream (a Redis restart, a crash
        # between insert and enqueue): enqueue it again; duplicates are harmless.
        pending = await execution_sql.pending_ids(self.db)
        for execution_id in pending:
            await self.queue.enqueue(execution_id)
        if failed or removed or pending:
            log.warning(
                "recovered: %d execution(s) finished (platform_error, or cancelled), %d container(s) removed,"
                " %d re-enqueued",
                len(failed), len(removed), len(pending),
            )

    async def stop(self) -> None:
        """Stop taking jobs, let the running tasks finish, remove their containers."""
        self._stopping.set()
        if self._loop_task:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.runtime.pool:
            await self.runtime.pool.close()
        await self.runtime.drain()

    async def _consume(self) -> None:
        """One job per free slot: a worker never takes more than it can run now."""
        backoff = 0.1
        while not self._stopping.is_set():
            await self._slots.acquire()
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
            task = asyncio.create_task(self._handle(jobs[0]), name=f"execution-{jobs[0].execution_id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _handle(self, job: Job) -> None:
        running = self._running.setdefault(job.execution_id, _Running())
        try:
            await self._run(job.execution_id, running)
            await self.queue.ack(job.entry_id)
        except Exception:
            log.exception("execution %s: job failed; left unacked for redelivery", job.execution_id)
        finally:
            self._running.pop(job.execution_id, None)
            self._slots.release()

    async def _run(self, execution_id: uuid.UUID, running: _Running) -> None:
        claimed = await execution_sql.claim(self.db, execution_id, self.instance_id)
        if claimed is None:
            return  # already claimed, cancelled or finished: this delivery is a duplicate
        record, stdin = claimed
        agent = None
        try:
            agent = await self._version(record.agent_id, record.agent_version)
            spec = self._task_spec(agent, record, stdin)
            result = await self.runtime.run(spec, running.cancel)
            if agent.kind == "wasm":
                result = wasm.classify(result)
            outcome = outcome_of(result, agent.output_schema, fuel_budget=self._fuel(agent))
        except Exception as exc:
            log.exception("execution %s: platform failure", execution_id)
            outcome = Outcome(Status.FAILED, error=ExecutionError(ErrorType.PLATFORM_ERROR, f"platform failure: {exc}"))
        await self.finisher.finish(record, outcome, from_status=Status.RUNNING, agent=agent)
        await self.events.publish_finished(execution_id)

    def _fuel(self, agent: AgentVersion) -> int | None:
        """A WASM agent's fuel budget per run; None for container agents."""
        if agent.kind != "wasm":
            return None
        return agent.fuel or self.settings.wasm_default_fuel

    def _task_spec(self, agent: AgentVersion, record: ExecutionRecord, stdin: bytes | None) -> TaskSpec:
        command = agent.command
        if agent.kind == "wasm":
            # wasmtime's timeout counts from its own start, which for a pre-started container is
            # before the claim: it is only a backstop. The task's wall clock is the orchestrator's,
            # from the claim, as for every task.
            command = wasm.run_arguments(fuel=self._fuel(agent) or self.settings.wasm_default_fuel,
                                         timeout_s=record.limits.timeout_s + MAX_IDLE_AGE_S + 5,
                                         max_memory_bytes=wasm.memory_cap_bytes(record.limits.memory_mb))
        assert agent.image_digest is not None  # submission refuses a version without its image
        return TaskSpec(
            execution_id=str(record.id),
            image=agent.image_digest,
            command=command,
            stdin=stdin if stdin is not None else encode_input(record.input),
            limits=record.limits,
            max_output_bytes=self.settings.max_output_bytes,
            max_log_bytes=self.settings.max_log_bytes,
            tmpfs_mb=self.settings.tmpfs_mb,
            oci_runtime=self.settings.oci_runtime,
            pool_min=(agent.pool or {}).get("min", self.settings.pool_default_min),
            pool_max=(agent.pool or {}).get("max", self.settings.pool_default_max),
        )

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
