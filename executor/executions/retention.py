"""The retention of execution bodies: a background sweep (docs/retention.md).

With EXECUTOR_RETENTION_S set, every process of a deployment (API, worker or both) runs one
sweep loop, like the tree-head signer and the webhook dispatcher. The sweeps need no
coordination: each statement is idempotent and skips rows another one holds
(storage/retention.py), so several processes share the work and never count a row twice.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from executor.observability.metrics import METRICS
from executor.storage import retention as retention_sql

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.5
MAX_INTERVAL_S = 60.0
BATCHES_PER_TICK = 20  # at most 20 x 500 rows a tick; a backlog drains over the next ticks


def sweep_interval_s(retention_s: float) -> float:
    """How often to sweep: a tenth of the retention, within [0.5 s, 60 s], so bodies outlive
    the retention by at most about a tenth of it (a minute for long retentions)."""
    return min(max(retention_s / 10, MIN_INTERVAL_S), MAX_INTERVAL_S)


class BodyRetention:
    """Deletes the bodies of final executions `retention_s` after they finished; off at 0."""

    def __init__(self, db: asyncpg.Pool, retention_s: float, *, batch: int = retention_sql.BATCH,
                 batches_per_tick: int = BATCHES_PER_TICK) -> None:
        self.db = db
        self.retention_s = retention_s
        self.batch = batch
        self.batches_per_tick = batches_per_tick
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.retention_s > 0

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="body-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def sweep(self) -> int:
        """One tick: batches until one comes back short or the tick's bound is reached; how many
        executions' bodies were deleted."""
        deleted = 0
        for _ in range(self.batches_per_tick):
            ids = await retention_sql.delete_due_bodies(self.db, self.retention_s, limit=self.batch)
            deleted += len(ids)
            if ids:
                METRICS.bodies_deleted(len(ids))
            if len(ids) < self.batch:
                break
        if deleted:
            log.info("retention: deleted the bodies of %d execution(s) finished more than %g s ago",
                     deleted, self.retention_s)
        return deleted

    async def _run(self) -> None:
        interval_s = sweep_interval_s(self.retention_s)
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sweep()
            except Exception as exc:  # a database blip: the next tick tries again
                log.warning("retention: could not delete execution bodies: %s", exc)
