"""Keeping jobs alive and taking over the jobs of dead workers.

    renew     every visibility/3 s, the jobs this worker runs are XCLAIMed to itself
              again, which resets their idle time: a live worker's jobs never look abandoned;
    reclaim   every visibility/2 s, XAUTOCLAIM takes the jobs idle for the visibility
              timeout: their worker died (or lost Redis for that long);
    resweep   when Redis's run_id changes (it restarted without its data, or failed over),
              every PENDING execution is enqueued again from PostgreSQL (once per new run_id,
              across all workers); duplicates are harmless, the claim is conditional.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import asyncpg
import redis.asyncio as redis

from executor.queue.stream import Job, JobQueue
from executor.storage import executions as execution_sql

log = logging.getLogger(__name__)

_RESWEEP_KEY = "executor:resweep:"


class Leases:
    def __init__(self, db: asyncpg.Pool, client: redis.Redis, queue: JobQueue, consumer: str, *,
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
        self._run_id: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        try:  # known from the start, so that a restart before the first round is seen too
            self._run_id = str((await self.redis.info("server")).get("run_id"))
        except Exception as exc:
            log.warning("could not read Redis's run_id: %s", exc)
        self._tasks = [asyncio.create_task(self._every(self.visibility_s / 3, self.renew), name="jobs-renew"),
                       asyncio.create_task(self._every(self.visibility_s / 2, self.reclaim), name="jobs-reclaim")]

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
        await self.queue.ensure_group()
        pending = await execution_sql.pending_ids(self.db)
        for execution_id in pending:
            await self.queue.enqueue(execution_id)
        log.warning("Redis restarted (run_id %s): %d pending execution(s) enqueued again from PostgreSQL",
                    run_id[:8], len(pending))

    async def _every(self, interval_s: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a Redis or PostgreSQL blip: the next round tries again
                log.warning("%s failed: %s", getattr(action, "__name__", "job upkeep"), exc)
