"""The job queue: one Redis Stream read through one consumer group.

Delivery is at least once: a job can reach a worker twice (a restart before
its ack, a re-enqueue from PostgreSQL, a reclaim). The worker's claim in
PostgreSQL (PENDING → RUNNING) is what makes a task run once.

A worker renews the jobs it holds (`renew`: XCLAIM to itself, which resets their
idle time); a job nobody renewed for the visibility timeout belonged to a worker
that died, and another worker takes it over (`reclaim`: XAUTOCLAIM).

An entry leaves the stream only by `ack` (XACK and XDEL in one transaction), or by
`drop` for an entry nobody will ever ack: see `entries` and docs/scaling.md.

An entry's fields: `execution_id`, and `request_id` when the job was enqueued while a request
was handled (the worker logs under it: docs/logs.md); entries without it are read as well.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import redis.asyncio as redis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

STREAM = "executor:jobs"
GROUP = "workers"
_ALL = 2**31 - 1  # XPENDING's COUNT for "the whole pending list"

# A stream entry as redis-py gives it: its id and its fields (None once deleted while pending).
RawEntry: TypeAlias = tuple[bytes | str, dict[bytes | str, bytes | str] | None]


@dataclass(frozen=True)
class Job:
    entry_id: str
    execution_id: uuid.UUID
    reclaimed: bool = False  # taken over from a worker that stopped renewing it
    request_id: str | None = None  # of the request that enqueued it, for the worker's log lines
    priority: str = "normal"  # its class (queue/classes.py): the stream it came from


@dataclass(frozen=True)
class Entry:
    """One job of the stream, as a consistent snapshot saw it."""

    entry_id: str
    execution_id: uuid.UUID | None  # None: a malformed entry, nothing to run
    holder: str | None  # the consumer it was delivered to and that has not acked it yet
    delivered: bool  # the group has given it out (its id is not past the last delivered one)

    @property
    def stranded(self) -> bool:
        """Given out, yet held by no consumer: no read or reclaim will ever give it out again,
        so nobody would ever ack it (its holder was deleted from the group, for one)."""
        return self.delivered and self.holder is None


@dataclass(frozen=True)
class QueueStats:
    depth: int  # jobs accepted and not yet finished (waiting or held by a worker)
    oldest_age_s: float | None  # age of the oldest of them; None when there is none


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _position(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def _execution_id(fields: dict[bytes | str, bytes | str] | None) -> uuid.UUID | None:
    raw = fields.get(b"execution_id") if fields else None
    try:
        return uuid.UUID(_text(raw)) if raw is not None else None
    except ValueError:
        return None


def _request_id(fields: dict[bytes | str, bytes | str] | None) -> str | None:
    raw = fields.get(b"request_id") if fields else None
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    return raw[:128] if raw else None


def job_fields(execution_id: uuid.UUID, request_id: str | None) -> dict[FieldT, EncodableT]:
    fields: dict[FieldT, EncodableT] = {"execution_id": str(execution_id)}
    if request_id is not None:
        fields["request_id"] = request_id
    return fields


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

    async def enqueue(self, execution_id: uuid.UUID, *, request_id: str | None = None) -> str:
        entry_id = await self._redis.xadd(self.stream, job_fields(execution_id, request_id))
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    async def enqueue_many(self, execution_ids: Sequence[uuid.UUID], *,
                           request_id: str | None = None) -> list[str | Exception]:
        """One XADD per id, all in one round trip (a pipeline, not a transaction: each job stands
        alone): per id, its entry id or the error Redis answered for it. A connection that fails
        raises, and then any of them may or may not have been added."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for execution_id in execution_ids:
                pipe.xadd(self.stream, job_fields(execution_id, request_id))
            replies = await pipe.execute(raise_on_error=False)
        return [reply if isinstance(reply, Exception) else _text(reply) for reply in replies]

    async def read(self, consumer: str, *, count: int, block_ms: int | None) -> list[Job]:
        """New jobs for this consumer, waiting up to block_ms for the first (None: not at all)."""
        try:
            response = await self._redis.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count,
                                                    block=block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()  # Redis restarted without its data: the group is made again
            return []
        # The clients speak RESP2 (redis-py's default), whose reply is [[stream, entries]]; redis-py's
        # types also allow RESP3's {stream: entries}.
        batches = cast("list[tuple[bytes, list[RawEntry]]]", response or [])
        jobs = []
        for _stream, entries in batches:
            jobs += await self.jobs_of(entries)
        return jobs

    async def jobs_of(self, entries: Sequence[RawEntry], *, reclaimed: bool = False) -> list[Job]:
        """The jobs of entries read from this stream; a malformed one (or one deleted while
        pending) is acked on the way: there is nothing to run."""
        jobs = []
        for entry_id, fields in entries:
            entry, execution_id = _text(entry_id), _execution_id(fields)
            if execution_id is None:  # deleted while pending, or malformed: nothing to run
                await self.ack(entry)
                continue
            jobs.append(Job(entry, execution_id, reclaimed=reclaimed, request_id=_request_id(fields)))
        return jobs

    async def renew(self, consumer: str, entry_ids: list[str]) -> None:
        """Keep the jobs this worker runs from looking abandoned (resets their idle time)."""
        if entry_ids:
            # list(): redis-py types the ids as list[EncodableT], which a list[str] is not (lists are invariant)
            await self._redis.xclaim(self.stream, self.group, consumer, 0, list(entry_ids), justid=True)

    async def reclaim(self, consumer: str, *, min_idle_s: float, count: int) -> list[Job]:
        """Jobs nobody renewed for `min_idle_s`: their worker died. They are this consumer's now."""
        reply = await self._redis.xautoclaim(self.stream, self.group, consumer, int(min_idle_s * 1000),
                                             start_id="0-0", count=count)
        entries = reply[1] if reply else []
        return await self.jobs_of([e for e in entries if e is not None], reclaimed=True)

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

    async def entries(self, *, delivered_only: bool = False) -> list[Entry]:
        """The stream's entries with who holds each, read in one transaction. All of them is
        O(length) (for a worker's start); `delivered_only`, those given out so far, which is
        about what the workers run now plus anything stranded (for the periodic round)."""
        await self.ensure_group()
        # Given out before this read; an entry leaves the pending list only acked (and deleted)
        # or with its deleted consumer, so "given out, still here, held by nobody" holds below.
        upto = await self._last_delivered() if delivered_only else "+"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xinfo_groups(self.stream)
            pipe.xpending_range(self.stream, self.group, min="-", max=upto, count=_ALL)
            pipe.xrange(self.stream, "-", upto)
            groups, pending, entries = await pipe.execute()
        last = self._group_last(groups)
        holders = {_text(p["message_id"]): _text(p["consumer"]) for p in pending}
        return [Entry(_text(entry_id), _execution_id(fields), holders.get(_text(entry_id)),
                      _position(_text(entry_id)) <= _position(last))
                for entry_id, fields in entries]

    async def _last_delivered(self) -> str:
        return self._group_last(await self._redis.xinfo_groups(self.stream))

    def _group_last(self, groups: list[dict[str, Any]]) -> str:
        return next((_text(g["last-delivered-id"]) for g in groups if _text(g["name"]) == self.group), "0-0")

    async def drop(self, entry_ids: list[str]) -> None:
        """Ack and delete entries nobody would ever ack otherwise (stranded ones, a dead
        consumer's), in batches."""
        for start in range(0, len(entry_ids), 500):
            batch = entry_ids[start:start + 500]
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(self.stream, self.group, *batch)
                pipe.xdel(self.stream, *batch)
                await pipe.execute()

    async def idle_consumers(self, min_idle_s: float) -> list[str]:
        """Consumers holding nothing that have not read, renewed or reclaimed for `min_idle_s`."""
        consumers = await self._redis.xinfo_consumers(self.stream, self.group)
        return [_text(c["name"]) for c in consumers
                if int(c["pending"]) == 0 and int(c["idle"]) >= min_idle_s * 1000]

    async def forget_consumer(self, consumer: str) -> None:
        """Remove a consumer from the group. Only for one that holds nothing: the entries a
        consumer holds when it is deleted stay in the stream, given out to nobody."""
        await self._redis.xgroup_delconsumer(self.stream, self.group, consumer)

    async def ack(self, entry_id: str, *, publish: tuple[str, str] | None = None) -> None:
        """Done with a job: acknowledged and deleted, and `publish` (channel, message) sent in
        the same transaction."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, self.group, entry_id)
            pipe.xdel(self.stream, entry_id)
            if publish is not None:
                pipe.publish(*publish)
            await pipe.execute()
