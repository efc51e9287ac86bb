"""The job queue: one Redis Stream read through one consumer group.

Delivery is at least once: a job can reach a worker twice (a restart before
its ack, a re-enqueue from PostgreSQL). The worker's claim in PostgreSQL
(PENDING → RUNNING) is what makes a task run once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import ResponseError

STREAM = "executor:jobs"
GROUP = "workers"


@dataclass(frozen=True)
class Job:
    entry_id: str
    execution_id: uuid.UUID


class JobQueue:
    def __init__(self, client: redis.Redis, *, stream: str = STREAM, group: str = GROUP) -> None:
        self._redis = client
        self.stream = stream
        self.group = group

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def enqueue(self, execution_id: uuid.UUID) -> str:
        entry_id = await self._redis.xadd(self.stream, {"execution_id": str(execution_id)})
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    async def read(self, consumer: str, *, count: int, block_ms: int) -> list[Job]:
        """New jobs for this consumer, waiting up to block_ms for the first."""
        response = await self._redis.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count, block=block_ms)
        jobs = []
        for _stream, entries in response or []:
            for entry_id, fields in entries:
                raw = fields.get(b"execution_id") if fields else None
                entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                if raw is None:  # an entry deleted while pending: nothing to run
                    await self.ack(entry)
                    continue
                jobs.append(Job(entry, uuid.UUID(raw.decode())))
        return jobs

    async def forget_consumer(self, consumer: str) -> int:
        """Drop a consumer with the jobs it was given but never acked (after a restart,
        the worker re-enqueues from PostgreSQL whatever is still PENDING)."""
        return int(await self._redis.xgroup_delconsumer(self.stream, self.group, consumer))

    async def ack(self, entry_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            await pipe.execute()
