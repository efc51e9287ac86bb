"""Priority classes (executor/queue/classes.py) against a real Redis: the weighted turn, a class
with nothing waiting giving up its turn, a blocking read woken by any class, and renew, reclaim,
ack, drop and entries routed to each job's own stream by its id."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from executor.queue.classes import PRIORITIES, TURN, JobQueues, split


@pytest.fixture
async def queues(redis_server) -> AsyncIterator[JobQueues]:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/15")
    found = JobQueues(client, stream=f"test:classes:{uuid.uuid4().hex}")
    await found.ensure_group()
    try:
        yield found
    finally:
        await client.delete(*found.streams.values())
        await client.aclose()


async def _enqueue(queues: JobQueues, counts: dict[str, int]) -> dict[uuid.UUID, str]:
    ids: dict[uuid.UUID, str] = {}
    for priority, count in counts.items():
        for _ in range(count):
            execution_id = uuid.uuid4()
            await queues.enqueue(execution_id, priority=priority)
            ids[execution_id] = priority
    return ids


async def _take(queues: JobQueues, n: int, consumer: str = "worker-a") -> list[str]:
    taken = []
    for _ in range(n):
        (job,) = await queues.read(consumer, count=1, block_ms=100)
        taken.append(job.priority)
        await queues.ack(job.entry_id)
    return taken


def test_ids_name_their_class_but_a_normal_one_is_the_stream_s_own() -> None:
    assert split("1733500000000-0") == ("normal", "1733500000000-0")
    assert split("high:1733500000000-0") == ("high", "1733500000000-0")
    assert split("low:1-2") == ("low", "1-2")
    assert split("other:1-2") == ("normal", "other:1-2")  # not a class: left as it is


async def test_the_turn_while_every_class_has_work(queues: JobQueues) -> None:
    await _enqueue(queues, {"low": 6, "normal": 6, "high": 6})  # enqueued lowest first, on purpose
    assert await _take(queues, 12) == list(TURN) * 2
    assert await _take(queues, 6) == ["normal", "normal", "low", "low", "low", "low"]  # high ran out
    assert await queues.depth() == 0


async def test_a_class_with_nothing_waiting_gives_its_turn_away(queues: JobQueues) -> None:
    await _enqueue(queues, {"low": 3})
    assert await _take(queues, 3) == ["low"] * 3
    await _enqueue(queues, {"normal": 2, "low": 2})
    # The turn is at its 4th place (normal): normal twice, then low's own place, then high's
    # (nothing): the next one down.
    assert await _take(queues, 4) == ["normal", "normal", "low", "low"]


async def test_a_job_read_in_turn_keeps_its_fields(queues: JobQueues) -> None:
    """The turn's read is one script for the three streams: a job comes out of it as out of a
    stream's own read, its request id with it."""
    execution_id = uuid.uuid4()
    entry_id = await queues.enqueue(execution_id, request_id="req-42", priority="low")
    (job,) = await queues.read("worker-a", count=1, block_ms=None)
    assert (job.entry_id, job.execution_id, job.request_id, job.priority) == (entry_id, execution_id, "req-42", "low")
    assert await queues.read("worker-a", count=1, block_ms=None) == []


async def test_a_read_after_redis_lost_its_data_makes_the_groups_again(queues: JobQueues) -> None:
    await queues.client.delete(*queues.streams.values())  # the streams gone, and their groups with them
    assert await queues.read("worker-a", count=1, block_ms=100) == []
    await _enqueue(queues, {"low": 1, "high": 1})
    assert await _take(queues, 2) == ["high", "low"]


async def test_a_blocking_read_wakes_for_any_class(queues: JobQueues) -> None:
    for priority in PRIORITIES:
        reader = asyncio.create_task(queues.read("worker-a", count=1, block_ms=5000))
        await asyncio.sleep(0.2)  # blocked on all three streams by now
        assert not reader.done()
        execution_id = uuid.uuid4()
        await queues.enqueue(execution_id, priority=priority)
        (job,) = await asyncio.wait_for(reader, 5)
        assert (job.execution_id, job.priority) == (execution_id, priority)
        assert split(job.entry_id)[0] == priority
        await queues.ack(job.entry_id)


async def test_held_jobs_are_renewed_reclaimed_and_dropped_in_their_own_stream(queues: JobQueues) -> None:
    ids = await _enqueue(queues, {"high": 1, "normal": 1, "low": 1})
    held = [job for _ in range(3) for job in await queues.read("dead-worker", count=1, block_ms=100)]
    assert sorted(j.priority for j in held) == sorted(PRIORITIES)
    stats = await queues.stats_by_class()
    assert {p: s.depth for p, s in stats.items()} == {"high": 1, "normal": 1, "low": 1}
    assert (await queues.stats()).depth == 3 and await queues.depth() == 3
    entries = await queues.entries(delivered_only=True)
    assert {e.entry_id for e in entries} == {j.entry_id for j in held}
    assert {e.holder for e in entries} == {"dead-worker"}

    await queues.renew("dead-worker", [j.entry_id for j in held])  # known in each stream: no error
    await asyncio.sleep(0.05)
    reclaimed = await queues.reclaim("worker-b", min_idle_s=0.01, count=10)
    assert [j.priority for j in reclaimed] == list(PRIORITIES)  # the higher classes first
    assert all(j.reclaimed for j in reclaimed) and {j.execution_id for j in reclaimed} == set(ids)
    assert {j.entry_id for j in reclaimed} == {j.entry_id for j in held}

    await queues.ack(reclaimed[0].entry_id)
    await queues.drop([j.entry_id for j in reclaimed[1:]])
    assert await queues.depth() == 0 and await queues.entries() == []
    assert await queues.idle_consumers(0) == ["dead-worker", "worker-b"]
    for consumer in ("dead-worker", "worker-b"):
        await queues.forget_consumer(consumer)
    assert await queues.idle_consumers(0) == []


async def test_many_at_once_each_to_its_class(queues: JobQueues) -> None:
    executions = [uuid.uuid4() for _ in range(4)]
    replies = await queues.enqueue_many(executions, request_id="r-1", priorities=["low", "high", "normal", "high"])
    assert [split(str(r))[0] for r in replies] == ["low", "high", "normal", "high"]
    taken = [job for _ in range(4) for job in await queues.read("worker-a", count=1, block_ms=100)]
    assert [(j.execution_id, j.request_id) for j in taken][:2] == [(executions[1], "r-1"), (executions[3], "r-1")]
