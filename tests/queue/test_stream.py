"""The job stream against a real Redis: renewing keeps a job, an abandoned one is reclaimed,
stats, and a lost consumer group is made again."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as redis

from executor.queue.stream import JobQueue


async def _queue(redis_server) -> tuple[redis.Redis, JobQueue]:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/15")
    queue = JobQueue(client, stream=f"test:jobs:{uuid.uuid4().hex}")
    await queue.ensure_group()
    return client, queue


async def test_a_renewed_job_stays_an_abandoned_one_is_reclaimed(redis_server) -> None:
    client, queue = await _queue(redis_server)
    try:
        kept, abandoned = uuid.uuid4(), uuid.uuid4()
        await queue.enqueue(kept)
        await queue.enqueue(abandoned)
        jobs = await queue.read("worker-a", count=2, block_ms=100)
        assert [j.execution_id for j in jobs] == [kept, abandoned] and not any(j.reclaimed for j in jobs)
        for _ in range(4):
            await asyncio.sleep(0.1)
            await queue.renew("worker-a", [jobs[0].entry_id])  # worker-a still runs `kept`
        reclaimed = await queue.reclaim("worker-b", min_idle_s=0.3, count=10)
        assert [(j.execution_id, j.reclaimed) for j in reclaimed] == [(abandoned, True)]
        assert await queue.reclaim("worker-c", min_idle_s=0.3, count=10) == []  # worker-b holds it now
        stats = await queue.stats()
        assert stats.depth == 2 and stats.oldest_age_s is not None and 0 <= stats.oldest_age_s < 60
        for job in (jobs[0], reclaimed[0]):
            await queue.ack(job.entry_id)
        assert (await queue.stats()).depth == 0 and (await queue.stats()).oldest_age_s is None
    finally:
        await client.delete(queue.stream)
        await client.aclose()


async def test_reading_makes_a_lost_group_again(redis_server) -> None:
    client, queue = await _queue(redis_server)
    try:
        await client.delete(queue.stream)  # as after a Redis restart without its data
        assert await queue.read("worker-a", count=1, block_ms=10) == []
        await queue.enqueue(uuid.uuid4())
        assert len(await queue.read("worker-a", count=1, block_ms=100)) == 1
    finally:
        await client.delete(queue.stream)
        await client.aclose()


async def test_entries_say_who_holds_each_and_which_are_stranded(redis_server) -> None:
    client, queue = await _queue(redis_server)
    try:
        waiting, held, stranded = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        for execution_id in (held, stranded, waiting):
            await queue.enqueue(execution_id)
        await client.xadd(queue.stream, {"execution_id": "not-a-uuid"})
        jobs = await queue.read("worker-a", count=1, block_ms=100)
        assert [j.execution_id for j in jobs] == [held]
        (_given_out,) = await queue.read("worker-b", count=1, block_ms=100)
        # worker-b deleted from the group (what a recovery used to do): its entry stays, held by nobody
        await client.xgroup_delconsumer(queue.stream, queue.group, "worker-b")
        entries = await queue.entries()
        seen = [(e.execution_id, e.holder, e.delivered, e.stranded) for e in entries]
        assert seen == [(held, "worker-a", True, False), (stranded, None, True, True),
                        (waiting, None, False, False), (None, None, False, False)], seen
        assert [e.execution_id for e in await queue.entries(delivered_only=True)] == [held, stranded]
        await queue.drop([e.entry_id for e in entries if e.stranded or e.execution_id is None])
        assert [e.execution_id for e in await queue.entries()] == [held, waiting]
        # A malformed entry given out is acked and skipped, not a crash of the read loop.
        await client.xadd(queue.stream, {"execution_id": "not-a-uuid"})
        assert [j.execution_id for j in await queue.read("worker-a", count=2, block_ms=100)] == [waiting]
        assert (await queue.stats()).depth == 2
        await queue.enqueue(uuid.uuid4())
        (done,) = await queue.read("worker-c", count=1, block_ms=100)
        await queue.ack(done.entry_id)  # worker-c holds nothing now
        assert await queue.idle_consumers(0) == ["worker-c"]  # worker-a holds two: never a candidate
    finally:
        await client.delete(queue.stream)
        await client.aclose()
