"""The retention of execution bodies: a background sweep (docs/retention.md).

With EXECUTOR_RETENTION_S set, every process of a deployment (API, worker or both) runs one
sweep loop, like the tree-head signer and the webhook dispatcher. The sweeps need no
coordination: each statement is idempotent and skips rows another one holds
(storage/retention.py), so several processes share the work and never count a row twice.
"""

from __future__ import annotations

import logging

import asyncpg

from executor.observability.metrics import Metrics
from executor.storage import retention as retention_sql
from executor.sweeps import Sweep, sweep_interval_s

log = logging.getLogger(__name__)

BATCHES_PER_TICK = 20  # at most 20 x 500 rows a tick; a backlog drains over the next ticks


class BodyRetention:
    """Deletes the bodies of final executions `retention_s` after they finished; off at 0."""

    def __init__(self, db: asyncpg.Pool, retention_s: float, *, batch: int = retention_sql.BATCH,
                 batches_per_tick: int = BATCHES_PER_TICK, metrics: Metrics | None = None) -> None:
        self.db = db
        self.metrics = metrics if metrics is not None else Metrics()
        self.retention_s = retention_s
        self.batch = batch
        self.batches_per_tick = batches_per_tick
        self._sweep = Sweep("body-retention", sweep_interval_s(retention_s), self.sweep)

    @property
    def enabled(self) -> bool:
        return self.retention_s > 0

    def start(self) -> None:
        if self.enabled:
            self._sweep.start()

    async def stop(self) -> None:
        await self._sweep.stop()

    async def sweep(self) -> int:
        """One tick: batches until one comes back short or the tick's bound is reached; how many
        executions' bodies were deleted."""
        deleted = 0
        for _ in range(self.batches_per_tick):
            ids = await retention_sql.delete_due_bodies(self.db, self.retention_s, limit=self.batch)
            deleted += len(ids)
            if ids:
                self.metrics.bodies_deleted(len(ids))
            if len(ids) < self.batch:
                break
        if deleted:
            log.info("retention: deleted the bodies of %d execution(s) finished more than %g s ago",
                     deleted, self.retention_s)
        return deleted
