"""Priority classes: one job stream per class, read in a weighted turn (docs/scaling.md).

Each class is a whole JobQueue (queue/stream.py) of its own: its stream, its consumer group,
its pending list. So every guarantee of the stream (at least once, renew, reclaim, reconcile,
one final state through PostgreSQL's conditional claim) holds per class, unchanged.

    high    executor:jobs:high
    normal  executor:jobs          (the stream of before classes existed: its entries stay valid)
    low     executor:jobs:low

The worker's rule, one job at a time: a turn of six, `high high high normal normal low`; a
take tries its turn's class first, then the others from high to low (in one Lua script: one
round trip), and the turn moves on after every take. So while all three have jobs waiting,
of every six jobs a worker takes three are high, two normal and one low: the higher classes
go first and most often, and no class waits for ever behind another. With nothing waiting
anywhere, one blocking read on all three streams wakes at the first job of any class.

Entry ids are made unique across classes here: a normal job's is the stream's own
(`1733500000000-0`), another class's carries its name (`high:1733500000000-0`), so the worker
and the leases pass them around as before and every call below finds the class again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import cast

import redis.asyncio as redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from executor.queue.stream import GROUP, STREAM, Entry, Job, JobQueue, QueueStats, RawEntry, job_fields
from executor.records.principals import DEFAULT_PRIORITY, PRIORITIES

TURN = ("high", "high", "high", "normal", "normal", "low")


def streams_of(base: str) -> dict[str, str]:
    """Each class's stream: the normal class's is `base` itself."""
    return {"high": base + ":high", "normal": base, "low": base + ":low"}


def split(entry_id: str) -> tuple[str, str]:
    """(class, the stream's own id) of an id given out here."""
    name, sep, raw = entry_id.partition(":")
    return (name, raw) if sep and name in PRIORITIES else (DEFAULT_PRIORITY, entry_id)


def joined(priority: str, raw_id: str) -> str:
    return raw_id if priority == DEFAULT_PRIORITY else f"{priority}:{raw_id}"


# The classes' streams read in the turn's order, the first with a new entry served: one round
# trip where a read per class took three, each time a worker's slot frees (KEYS: the streams in
# order; ARGV: group, consumer, count). Non-blocking: a script may not block.
_READ_IN_TURN = """
for i, key in ipairs(KEYS) do
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', key, '>')
  if reply then return {i, reply[1][2]} end
end
return false
"""


class JobQueues:
    """The three classes' queues behind JobQueue's own interface (entry ids as above)."""

    def __init__(self, client: redis.Redis, *, stream: str = STREAM, group: str = GROUP) -> None:
        self._redis = client
        self.group = group
        self.streams = streams_of(stream)
        self.queues = {name: JobQueue(client, stream=each, group=group) for name, each in self.streams.items()}
        self._turn = 0
        self._read_in_turn: AsyncScript | None = None  # registered at the first read

    @property
    def client(self) -> redis.Redis:
        return self._redis

    @property
    def stream(self) -> str:
        """The normal class's stream."""
        return self.streams[DEFAULT_PRIORITY]

    async def ensure_group(self) -> None:
        for queue in self.queues.values():
            await queue.ensure_group()

    async def enqueue(self, execution_id: uuid.UUID, *, request_id: str | None = None,
                      priority: str = DEFAULT_PRIORITY) -> str:
        queue = self.queues[priority]
        return joined(priority, await queue.enqueue(execution_id, request_id=request_id))

    async def enqueue_many(self, execution_ids: Sequence[uuid.UUID], *, request_id: str | None = None,
                           priorities: Sequence[str] | None = None) -> list[str | Exception]:
        """As JobQueue.enqueue_many, each id to its class's stream, all in one round trip."""
        classes = list(priorities) if priorities is not None else [DEFAULT_PRIORITY] * len(execution_ids)
        async with self._redis.pipeline(transaction=False) as pipe:
            for execution_id, priority in zip(execution_ids, classes, strict=True):
                pipe.xadd(self.streams[priority], job_fields(execution_id, request_id))
            replies = await pipe.execute(raise_on_error=False)
        return [reply if isinstance(reply, Exception) else joined(priority, _text(reply))
                for reply, priority in zip(replies, classes, strict=True)]

    async def read(self, consumer: str, *, count: int, block_ms: int) -> list[Job]:
        """Up to `count` new jobs of one class, chosen by the turn; waiting up to block_ms for the
        first of any class when none is waiting."""
        first = TURN[self._turn % len(TURN)]
        order = (first, *(p for p in PRIORITIES if p != first))
        if self._read_in_turn is None:
            self._read_in_turn = self._redis.register_script(_READ_IN_TURN)
        try:
            found = await self._read_in_turn(keys=[self.streams[p] for p in order], args=[self.group, consumer, count])
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()  # Redis restarted without its data
            return []
        if found:
            priority = order[int(found[0]) - 1]
            entries = [(entry_id, _fields(flat)) for entry_id, flat in found[1]]
            jobs = [_named(priority, job) for job in await self.queues[priority].jobs_of(entries)]
            if jobs:
                self._turn += 1
            return jobs
        try:
            response = await self._redis.xreadgroup(self.group, consumer, {s: ">" for s in self.streams.values()},
                                                    count=count, block=block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()  # Redis restarted without its data
            return []
        # Served by the first stream that got an entry: Redis answers a client blocked on several
        # keys with that key's entries alone (at most `count`).
        woken: list[Job] = []
        for stream, entries in cast("list[tuple[bytes, list[RawEntry]]]", response or []):
            priority = next(p for p, known in self.streams.items() if known == _text(stream))
            woken += [_named(priority, job) for job in await self.queues[priority].jobs_of(entries)]
        if woken:
            self._turn += 1
        return woken

    async def renew(self, consumer: str, entry_ids: list[str]) -> None:
        for priority, ids in _by_class(entry_ids).items():
            await self.queues[priority].renew(consumer, ids)

    async def reclaim(self, consumer: str, *, min_idle_s: float, count: int) -> list[Job]:
        """Jobs of dead workers, the higher classes' first."""
        found: list[Job] = []
        for priority in PRIORITIES:
            if len(found) >= count:
                break
            jobs = await self.queues[priority].reclaim(consumer, min_idle_s=min_idle_s, count=count - len(found))
            found += [_named(priority, job) for job in jobs]
        return found

    async def stats(self) -> QueueStats:
        """All classes together: their depth, and the oldest job's age."""
        return merged([await self.queues[p].stats() for p in PRIORITIES])

    async def stats_by_class(self) -> dict[str, QueueStats]:
        return {p: await self.queues[p].stats() for p in PRIORITIES}

    async def depth(self) -> int:
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream in self.streams.values():
                pipe.xlen(stream)
            return sum(int(n) for n in await pipe.execute())

    async def entries(self, *, delivered_only: bool = False) -> list[Entry]:
        found: list[Entry] = []
        for priority in PRIORITIES:
            for entry in await self.queues[priority].entries(delivered_only=delivered_only):
                found.append(Entry(joined(priority, entry.entry_id), entry.execution_id, entry.holder,
                                   entry.delivered))
        return found

    async def drop(self, entry_ids: list[str]) -> None:
        for priority, ids in _by_class(entry_ids).items():
            await self.queues[priority].drop(ids)

    async def idle_consumers(self, min_idle_s: float) -> list[str]:
        """Consumers holding nothing and idle for `min_idle_s` in every class's stream they are known to."""
        idle: dict[str, bool] = {}
        for stream in self.streams.values():
            try:
                consumers = await self._redis.xinfo_consumers(stream, self.group)
            except ResponseError:  # no such stream or group (yet): nobody is known to it
                continue
            for consumer in consumers:
                name = _text(consumer["name"])
                quiet = int(consumer["pending"]) == 0 and int(consumer["idle"]) >= min_idle_s * 1000
                idle[name] = idle.get(name, True) and quiet
        return sorted(name for name, quiet in idle.items() if quiet)

    async def forget_consumer(self, consumer: str) -> None:
        for queue in self.queues.values():
            await queue.forget_consumer(consumer)

    async def ack(self, entry_id: str, *, publish: tuple[str, str] | None = None) -> None:
        priority, raw = split(entry_id)
        await self.queues[priority].ack(raw, publish=publish)


def merged(stats: list[QueueStats]) -> QueueStats:
    ages = [s.oldest_age_s for s in stats if s.oldest_age_s is not None]
    return QueueStats(sum(s.depth for s in stats), max(ages) if ages else None)


def _named(priority: str, job: Job) -> Job:
    return Job(joined(priority, job.entry_id), job.execution_id, reclaimed=job.reclaimed,
               request_id=job.request_id, priority=priority)


def _by_class(entry_ids: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for entry_id in entry_ids:
        priority, raw = split(entry_id)
        found.setdefault(priority, []).append(raw)
    return found


def _fields(flat: list[bytes] | None) -> dict[bytes | str, bytes | str] | None:
    """A stream entry's fields as a script returns them, [name, value, ...], as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True)) if flat else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
