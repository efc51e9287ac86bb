"""The job queue: one Redis Stream read through one consumer group.

Delivery is at least once: a job can reach a worker twice (a restart before
its ack, a re-enqueue from PostgreSQL, a reclaim). The worker's claim in
PostgreSQL (PENDING → RUNNING) is what makes a task run once.

A worker renews the jobs it holds (`renew`: XCLAIM to itself, which resets their
idle time); a job nobody renewed for the visibility timeout belonged to a worker
that died, and another worker takes it over (`reclaim`: XAUTOCLAIM).
"""

from __future__ import annotations

import time
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
    reclaimed: bool = False  # taken over from a worker that stopped renewing it


@dataclass(frozen=True)
class QueueStats:
    depth: int  # jobs accepted and not yet finished (waiting or held by a worker)
    oldest_age_s: float | None  # age of the oldest of them; None when there is none


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class JobQueue:
    def __init__(self, client: redis.Redis, *, stream: str = STREAM, group: str = GROUP) -> None:
        self._redis = client
        self.stream = stream
        self.group = group

    @property
    def client(self) -> redis.Redis:
        return self._redis

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
        try:
            response = await self._redis.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count,
                                                    block=block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()  # Redis restarted without its data: the group is made again
            return []
        jobs = []
        for _stream, entries in response or []:
            jobs += await self._jobs(entries, reclaimed=False)
        return jobs

    async def _jobs(self, entries: list, *, reclaimed: bool) -> list[Job]:
        jobs = []
        for entry_id, fields in entries:
            raw = fields.get(b"execution_id") if fields else None
            entry = _text(entry_id)
            if raw is None:  # an entry deleted while pending: nothing to run
                await self.ack(entry)
                continue
            jobs.append(Job(entry, uuid.UUID(_text(raw)), reclaimed=reclaimed))
        return jobs

    async def renew(self, consumer: str, entry_ids: list[str]) -> None:
        """Keep the jobs this worker runs from looking abandoned (resets their idle time)."""
        if entry_ids:
            await self._redis.xclaim(self.stream, self.group, consumer, 0, entry_ids, justid=True)

    async def reclaim(self, consumer: str, *, min_idle_s: float, count: int) -> list[Job]:
        """Jobs nobody renewed for `min_idle_s`: their worker died. They are this consumer's now."""
        reply = await self._redis.xautoclaim(self.stream, self.group, consumer, int(min_idle_s * 1000),
                                             start_id="0-0", count=count)
        entries = reply[1] if reply else []
        return await self._jobs([e for e in entries if e is not None], reclaimed=True)

    async def stats(self) -> QueueStats:
        """Depth and the oldest job's age (its entry id holds its enqueue time in ms)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.stream)
            pipe.xrange(self.stream, "-", "+", count=1)
            depth, first = await pipe.execute()
        oldest = None
        if first:
            enqueued_ms = int(_text(first[0][0]).split("-", 1)[0])
            oldest = max(0.0, time.time() - enqueued_ms / 1000)
        return QueueStats(int(depth), oldest)

    async def depth(self) -> int:
        return int(await self._redis.xlen(self.stream))

    async def forget_consumer(self, consumer: str) -> int:
        """Drop a consumer with the jobs it was given but never acked (after a restart,
        the worker re-enqueues from PostgreSQL whatever is still PENDING)."""
        return int(await self._redis.xgroup_delconsumer(self.stream, self.group, consumer))

    async def ack(self, entry_id: str, *, publish: tuple[str, str] | None = None) -> None:
        """Done with a job: acknowledged and deleted, and `publish` (channel, message) sent in
        the same transaction."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            if publish is not None:
                pipe.publish(*publish)
            await pipe.execute()
