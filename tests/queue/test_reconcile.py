"""The periodic reconciliation of the job stream with PostgreSQL, against a real service's
database and Redis: entries nobody would ever ack are dropped, an execution still PENDING whose
entry was one of them gets a new one, and a worker then runs everything to the end."""

from __future__ import annotations

import uuid

import asyncpg
import redis.asyncio as redis

from executor.executions.leases import Leases
from executor.queue.classes import JobQueues
from executor.queue.stream import GROUP, STREAM
from tests.api.conftest import final_record, wait_for
from tests.api.test_request_ids import lines_of
from tests.conftest import make_service, started


async def _nothing(job: object) -> bool:
    return False


async def test_the_periodic_round_drops_stranded_entries_and_requeues_what_is_pending(
        postgres, redis_server, images) -> None:
    svc = make_service(postgres, redis_server, "reconcile", redis_db="6", pool_enabled="false", job_visibility_s="2")
    front = svc.sibling("reconcile_api", command="api")  # takes submissions; no worker runs them yet
    client = redis.Redis.from_url(svc.env["EXECUTOR_REDIS_URL"])
    db = await asyncpg.create_pool(svc.env["EXECUTOR_DATABASE_URL"], min_size=1, max_size=2)
    try:
        async with started(front) as api:
            agent_id = await api.register(["cat"])
            ids, request_ids = [], [f"reconcile-{uuid.uuid4()}" for _ in range(2)]
            for n in range(2):
                status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {"n": n}},
                                                   headers={"X-Request-Id": request_ids[n]})
                assert status == 202, record
                ids.append(record["id"])
        queue = JobQueues(client)
        await queue.ensure_group()  # as the worker's start does
        # The first job given to a consumer that was then deleted; the second held by a live one.
        await client.xreadgroup(GROUP, "deleted-worker", {STREAM: ">"}, count=1)
        await client.xgroup_delconsumer(STREAM, GROUP, "deleted-worker")
        (held,) = await queue.read("live-worker", count=1, block_ms=100)
        assert str(held.execution_id) == ids[1]
        await queue.enqueue(uuid.uuid4())  # a job whose execution does not exist, stranded too
        await client.xreadgroup(GROUP, "deleted-worker", {STREAM: ">"}, count=1)
        await client.xgroup_delconsumer(STREAM, GROUP, "deleted-worker")

        leases = Leases(db, client, queue, "test-reconciler", visibility_s=2, held=list, free_slots=lambda: 0,
                        take=_nothing)
        done = await leases.reconcile()
        assert (done.dropped, done.enqueued, done.consumers_removed) == (2, 1, 0), done
        entries = await queue.entries()
        assert [(str(e.execution_id), e.holder) for e in entries] == [(ids[1], "live-worker"), (ids[0], None)]
        # The new entry was made from PostgreSQL alone, and still names the request that submitted it.
        fields = [f for _, f in await client.xrange(STREAM) if f[b"execution_id"].decode() == ids[0]]
        assert [f.get(b"request_id") for f in fields] == [request_ids[0].encode()], fields
        assert (await leases.reconcile()).dropped == 0  # nothing left to do

        async with started(svc) as api:  # a worker: runs the new entry, reclaims the held one
            for n, execution_id in enumerate(ids):
                final = await wait_for(lambda e=execution_id: final_record(api, e), timeout=60)
                assert final["status"] == "COMPLETED" and final["output"] == {"n": n}, final
            await wait_for(lambda: _empty(queue), timeout=30)
        # ... and so do the worker's lines of each (docs/logs.md).
        for execution_id, request_id in zip(ids, request_ids, strict=True):
            lines = await lines_of(svc, request_id, logger="executor.executions.finish")
            assert [line["execution_id"] for line in lines] == [execution_id], lines
    finally:
        await db.close()
        await client.aclose()


async def _empty(queue: JobQueues) -> bool:
    return (await queue.stats()).depth == 0
