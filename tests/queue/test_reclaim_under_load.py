"""A dead worker's job is taken over while the surviving worker stays saturated, not once the
load ebbs (the two-engine drill found it waiting 60 to 90 s: every free slot was taken at once
by the worker's own blocking read, and a reclaimed job was refused for want of one)."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as redis

from executor.queue.classes import JobQueues
from executor.queue.stream import GROUP, STREAM
from tests.api.conftest import final_record
from tests.conftest import make_service, started


async def test_a_reclaimed_job_runs_while_new_jobs_keep_coming(postgres, redis_server, images) -> None:
    svc = make_service(postgres, redis_server, "reclaim_load", redis_db="9", job_visibility_s="2",
                       worker_concurrency="2", pool_enabled="false", max_live_per_user="0")
    front = svc.sibling("reclaim_load_api", command="api")  # takes submissions; no worker runs them
    client = redis.Redis.from_url(svc.env["EXECUTOR_REDIS_URL"])
    try:
        await client.delete(*JobQueues(client).streams.values())
        async with started(front) as api:
            agent_id = await api.register(["sh", "-c", "sleep 0.3; cat"])
            status, orphan, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {"orphan": 1}})
            assert status == 202, orphan
        await JobQueues(client).ensure_group()  # as a worker's start does (from the stream's first entry)
        # Given to a consumer that then died: held, never renewed.
        delivered = await client.xreadgroup(GROUP, "dead-worker", {STREAM: ">"}, count=1)
        assert delivered and delivered[0][1], delivered

        async with started(svc) as api:
            finished: dict[str, object] = {}
            stop = asyncio.Event()

            async def load() -> None:
                while not stop.is_set():
                    status, record, _ = await api.post("/v1/executions?wait=30",
                                                       json={"agent_id": agent_id, "input": {}})
                    assert status == 201 and record["status"] == "COMPLETED", record
                    finished["load"] = int(finished.get("load", 0)) + 1  # type: ignore[call-overload]

            clients = [asyncio.create_task(load()) for _ in range(6)]  # 3 per slot: always a job waiting
            try:
                # The visibility timeout is 2 s and a reclaim round comes every 1 s: a minute is far
                # more than a takeover needs, and far less than a load that never ebbs.
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    record = await final_record(api, orphan["id"])
                    if record is not None:
                        finished["orphan"] = record
                        break
                    await asyncio.sleep(0.2)
                loaded_while = not any(c.done() for c in clients)
            finally:
                stop.set()
                await asyncio.gather(*clients)
        record = finished.get("orphan")
        assert isinstance(record, dict) and record["status"] == "COMPLETED", record
        assert loaded_while, "the load stopped before the orphan ended"
    finally:
        await client.aclose()
