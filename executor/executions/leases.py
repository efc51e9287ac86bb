"""Keeping jobs alive and taking over the jobs of dead workers.

    renew     every visibility/3 s, the jobs this worker runs are XCLAIMed to itself
              again, which resets their idle time: a live worker's jobs never look abandoned;
    reclaim   every visibility/2 s, XAUTOCLAIM takes the jobs idle for the visibility
              timeout: their worker died (or lost Redis for that long);
    resweep   when Redis's run_id changes (it restarted without its data, or failed over),
              every PENDING execution without an entry is enqueued again from PostgreSQL
              (once per new run_id, across all workers): a whole reconcile;
    reconcile at a worker's start (for the jobs its previous life held) and every
              max(60 s, 10 x visibility) on one worker of the deployment: the entries nobody
              will ever ack are dropped, and a PENDING execution left without an entry gets a
              new one. A job's entry ends acked by the worker done with it, or dropped here.
              Duplicates are harmless: the claim is conditional.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import redis.asyncio as redis

from executor.queue.classes import JobQueues
from executor.queue.stream import Job
from executor.storage import executions as execution_sql

log = logging.getLogger(__name__)

_RESWEEP_KEY = "executor:resweep:"
_RECONCILE_KEY = "executor:reconcile"
_IDLE_CONSUMER_S = 3600.0  # a consumer that held nothing and did nothing for this long is gone


@dataclass(frozen=True)
class Reconciled:
    dropped: int  # entries nobody would ever have acked
    enqueued: int  # PENDING executions that had no entry left
    consumers_removed: int  # consumers of workers long gone, holding nothing


class Leases:
    def __init__(self, db: asyncpg.Pool, client: redis.Redis, queue: JobQueues, consumer: str, *,
                 visibility_s: float, held: Callable[[], list[str]], free_slots: Callable[[], int],
                 take: Callable[[Job], Awaitable[bool]]) -> None:
        self.db = db
        self.redis = client
        self.queue = queue
        self.consumer = consumer
        self.visibility_s = visibility_s
        self._held = held  # entry ids of the jobs this worker runs now
        self._free_slots = free_slots
        self._take = take  # hand a reclaimed job to the worker; False when it had no slot after all
        self.reconcile_every_s = max(60.0, visibility_s * 10)
        self._run_id: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        try:  # known from the start, so that a restart before the first round is seen too
            self._run_id = str((await self.redis.info("server")).get("run_id"))
        except Exception as exc:
            log.warning("could not read Redis's run_id: %s", exc)
        self._tasks = [asyncio.create_task(self._every(self.visibility_s / 3, self.renew), name="jobs-renew"),
                       asyncio.create_task(self._every(self.visibility_s / 2, self.reclaim), name="jobs-reclaim"),
                       asyncio.create_task(self._every(self.reconcile_every_s, self.reconcile_round),
                                           name="jobs-reconcile")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def renew(self) -> None:
        await self.queue.renew(self.consumer, self._held())

    async def reclaim(self) -> None:
        await self.resweep_if_redis_restarted()
        free = self._free_slots()
        if free <= 0:
            return
        for job in await self.queue.reclaim(self.consumer, min_idle_s=self.visibility_s, count=free):
            log.warning("execution %s: taking over its job from a worker that stopped renewing it",
                        job.execution_id)
            if not await self._take(job):
                break  # no slot after all: the rest is renewed by nobody and comes back next round

    async def resweep_if_redis_restarted(self) -> None:
        info = await self.redis.info("server")
        run_id = str(info.get("run_id"))
        if self._run_id is None:
            self._run_id = run_id
            return
        if run_id == self._run_id:
            return
        self._run_id = run_id
        if not await self.redis.set(_RESWEEP_KEY + run_id, self.consumer, nx=True, ex=3600):
            return  # another worker does it for this run of Redis
        done = await self.reconcile(whole=True)  # restored from a snapshot, it may hold some of them still
        log.warning("Redis restarted (run_id %s): %d pending execution(s) enqueued again from PostgreSQL",
                    run_id[:8], done.enqueued)

    async def reconcile(self, *, whole: bool = False, dead_consumer: str | None = None) -> Reconciled:
        """Make the stream agree with PostgreSQL. Dropped: entries given out and held by no
        consumer (nothing would ever give them out again), malformed ones, and those
        `dead_consumer` held (a worker's previous life, at its start: it holds nothing yet).
        Enqueued: with `whole` (a start, a Redis restart: the whole stream is read), each PENDING
        execution with no other entry; else (the periodic round, which reads only the entries
        given out so far), each PENDING execution one of whose entries was dropped. Both may
        race with live workers only towards a duplicate entry, harmless: the claim is conditional."""
        entries = await self.queue.entries(delivered_only=not whole)
        dropped: list[str] = []
        dropped_for: set[uuid.UUID] = set()
        covered: set[uuid.UUID] = set()
        for entry in entries:
            if entry.execution_id is not None and not entry.stranded and (
                    dead_consumer is None or entry.holder != dead_consumer):
                covered.add(entry.execution_id)
                continue
            dropped.append(entry.entry_id)
            if entry.execution_id is not None:
                dropped_for.add(entry.execution_id)
        missing: list[execution_sql.Pending] = []
        if whole or dropped:  # PostgreSQL read after the snapshot: newer than it
            missing = [pending for pending in await execution_sql.pending_ids(self.db)
                       if pending.id not in covered and (whole or pending.id in dropped_for)]
        for pending in missing:  # before the drop: a crash in between leaves a duplicate, not a loss
            await self.queue.enqueue(pending.id, request_id=pending.request_id, priority=pending.priority)
        await self.queue.drop(dropped)
        gone = [] if whole else await self.queue.idle_consumers(_IDLE_CONSUMER_S)
        for consumer in gone:
            await self.queue.forget_consumer(consumer)
        return Reconciled(len(dropped), len(missing), len(gone))

    async def reconcile_round(self) -> None:
        """The periodic reconciliation, on one worker of the deployment per period."""
        if not await self.redis.set(_RECONCILE_KEY, self.consumer, nx=True, ex=max(1, int(self.reconcile_every_s))):
            return
        done = await self.reconcile()
        if done.dropped or done.enqueued or done.consumers_removed:
            log.warning("job stream reconciled: %d entry(ies) nobody would ack dropped, %d pending execution(s)"
                        " without an entry enqueued, %d idle consumer(s) removed",
                        done.dropped, done.enqueued, done.consumers_removed)

    async def _every(self, interval_s: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a Redis or PostgreSQL blip: the next round tries again
                log.warning("%s failed: %s", getattr(action, "__name__", "job upkeep"), exc)
