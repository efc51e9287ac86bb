"""A service killed with SIGKILL mid-run cleans up after itself when it starts again: its
containers, its executions, and the jobs it held in the stream."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import aiohttp
import asyncpg
import docker
import redis.asyncio as redis

from executor.queue.stream import GROUP, STREAM
from runtimes.base import INSTANCE_LABEL, POOL_LABEL
from tests.api.conftest import final_record, wait_for
from tests.conftest import (
    Api,
    listed_containers,
    make_service,
    serving,
    started,
    wait_until_running,
)


async def test_sigkill_mid_run_then_restart(postgres, redis_server, images, docker_client: docker.DockerClient) -> None:
    # One start at most: a task cut off by the kill ends as platform_error instead of running again.
    async with serving(postgres, redis_server, "crash", redis_db="1", max_attempts="1") as (svc, api):
        agent_id = await api.register(["sleep", "300"], limits={"timeout_s": 300})
        status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
        label = await wait_until_running(docker_client, record["id"])

        # A second agent that reads its stdin gets pre-started containers.
        waiting = await api.register(["cat"])
        await api.run(waiting)
        pooled = {"label": [POOL_LABEL, f"{INSTANCE_LABEL}={svc.instance_id}"]}
        for _ in range(50):
            if listed_containers(docker_client, running_only=True, **pooled):
                break
            await asyncio.sleep(0.1)
        assert listed_containers(docker_client, running_only=True, **pooled), "no pre-started container to leave behind"

        svc.stop("KILL")
        assert listed_containers(docker_client, label=label), "the kill left no orphan to test"

        svc.start()  # same instance id, same database
        assert listed_containers(docker_client, **pooled) == []
        status, final, _ = await api.get(f"/v1/executions/{record['id']}")
        assert status == 200 and final["status"] == "FAILED", final
        assert final["error"]["type"] == "platform_error"
        status, bundle, _ = await api.get(f"/v1/executions/{record['id']}/receipt")
        assert status == 200, bundle
        statement = json.loads(base64.b64decode(bundle["envelope"]["payload"]))
        assert statement["status"] == "FAILED" and statement["error_type"] == "platform_error"
        assert listed_containers(docker_client, label=label) == []

        # And the restarted service works.
        status, again, _ = await api.post("/v1/executions?wait=30", json={"agent_id": agent_id, "input": {},
                                                                           "limits": {"timeout_s": 0.5}})
        assert again["status"] == "TIMEOUT"


async def _queue_gauges(api: Api) -> tuple[float, float]:
    """(executor_queue_depth, executor_queue_oldest_job_age_seconds) from /metrics."""
    status, body, _ = await api.get("/metrics")
    assert status == 200, body
    text = body.decode() if isinstance(body, bytes) else str(body)
    values = dict(line.split(" ", 1) for line in text.splitlines() if line.startswith("executor_queue_"))
    return float(values["executor_queue_depth"]), float(values["executor_queue_oldest_job_age_seconds"])


async def _queue_drains(api: Api, timeout: float = 60.0) -> None:
    """Wait for the queue to be empty (depth 0, no oldest job); the assertion says what was seen."""
    seen = await _queue_gauges(api)
    deadline = time.monotonic() + timeout
    while seen != (0.0, 0.0) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        seen = await _queue_gauges(api)
    assert seen == (0.0, 0.0), f"every execution is final, yet the queue holds (depth, oldest age s) = {seen}"


async def test_jobs_held_at_a_kill_leave_the_stream_after_restart(postgres, redis_server, images,
                                                                   docker_client: docker.DockerClient) -> None:
    """The jobs a killed worker held are not left in the stream when it starts again."""
    async with serving(postgres, redis_server, "held", redis_db="3", worker_concurrency="4",
                       pool_enabled="false") as (svc, api):
        agent_id = await api.register(["sh", "-c", "sleep 2; cat"])
        ids = []
        for n in range(4):
            status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {"n": n}})
            assert status == 202, record
            ids.append(record["id"])
        for execution_id in ids:  # all four held by the worker when it dies
            await wait_until_running(docker_client, execution_id, timeout=30)
        assert (await _queue_gauges(api))[0] == 4

        svc.stop("KILL")
        svc.start()  # same instance id: its own recovery puts the four back to run again
        for n, execution_id in enumerate(ids):
            final = await wait_for(lambda e=execution_id: final_record(api, e), timeout=60)
            assert final["status"] == "COMPLETED" and final["output"] == {"n": n}, final
        await _queue_drains(api)


async def test_three_kills_under_load_lose_double_and_leak_nothing(
        postgres, redis_server, images, docker_client: docker.DockerClient) -> None:
    """Three kill -9 of the whole service while submissions arrive and tasks run, each followed by
    a restart: every submission ends once (one receipt, one use, one charge) and the queue drains."""
    total, per_call = 60, 5
    svc = make_service(postgres, redis_server, "killload", redis_db="4", worker_concurrency="4",
                       max_attempts="4",  # three kills can cut one execution off three times
                       user_burst="1000", user_rate_per_s="1000", service_burst="1000",
                       service_rate_per_s="1000", max_live_per_user="0")
    db = await asyncpg.connect(svc.env["EXECUTOR_DATABASE_URL"])
    svc.start()
    try:
        async with aiohttp.ClientSession() as session:
            operator = Api(session, svc.base_url, svc.operator_token)
            service = await operator.new_token("service")
            status, agent, _ = await service.post("/v1/agents", json={
                "name": f"steady-{uuid.uuid4().hex[:8]}", "image": "executor/busybox:latest",
                "command": ["sh", "-c", "sleep 0.5; cat"], "input_schema": {"type": "object"},
                "output_schema": True, "pricing": {"currency": "EUR", "decimals": 2, "per_call": per_call}})
            assert status == 201, agent
            await service.grant("kim", agent["id"], uses=total)
            accepted: dict[int, str] = {}

            async def submit(n: int) -> None:
                # Retried with its Idempotency-Key through the kills until an answer comes: one
                # execution per submission whether or not the killed service answered.
                body = {"agent_id": agent["id"], "input": {"n": n}, "on_behalf_of": "kim"}
                while True:
                    try:
                        status, record, _ = await service.post(
                            "/v1/executions", json=body, headers={"Idempotency-Key": f"load-{n}"})
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.2)
                        continue
                    if status in (502, 503):
                        await asyncio.sleep(0.2)
                        continue
                    assert status in (200, 201, 202), (n, status, record)
                    accepted[n] = record["id"]
                    return

            async def load() -> None:
                for n in range(total):
                    await submit(n)
                    await asyncio.sleep(0.1)

            loader = asyncio.create_task(load())
            for kill in range(3):  # after a quarter, half and three quarters of the submissions
                async def running(quarters: int = kill + 1) -> int:
                    if len(accepted) < quarters * total // 4:
                        return 0
                    return await db.fetchval("SELECT count(*) FROM executions WHERE status = 'RUNNING'")

                seen = await wait_for(running, timeout=120)
                assert seen, f"kill {kill}: nothing running to cut off"
                svc.stop("KILL")
                await asyncio.to_thread(svc.start)
            await asyncio.wait_for(loader, 300)
            for n, execution_id in accepted.items():
                final = await wait_for(lambda e=execution_id: final_record(service, e), timeout=120)
                assert final["status"] == "COMPLETED" and final["output"] == {"n": n}, final
            await _queue_drains(operator)

        ids = [uuid.UUID(e) for e in accepted.values()]
        assert len(set(ids)) == total
        assert await db.fetchval("SELECT count(*) FROM executions") == total  # 0 doubled
        assert await db.fetchval("SELECT count(*) FROM executions WHERE status = 'COMPLETED'") == total  # 0 lost
        assert await db.fetchval("SELECT count(*) FROM receipts") == \
            await db.fetchval("SELECT count(DISTINCT execution_id) FROM receipts") == total
        assert await db.fetchval("SELECT size FROM log_state") == total
        assert await db.fetchval("SELECT uses_consumed FROM entitlements WHERE user_subject = 'kim'") == total
        assert await db.fetchval("SELECT sum((cost->>'amount')::int) FROM executions") == per_call * total
        restarts = await db.fetchval("SELECT count(*) FROM executions WHERE attempts > 1")
        assert restarts, "no execution was cut off by a kill and run again: the test tested nothing"
    finally:
        svc.stop()
        await db.close()


async def test_entries_nobody_would_ack_are_dropped_at_start(postgres, redis_server, images) -> None:
    """Entries given out to a consumer that was then deleted from the group (what a restart did
    before, and may still do on an older worker) are dropped when a worker starts; an execution
    still PENDING whose only entry was one of them runs all the same."""
    svc = make_service(postgres, redis_server, "stranded", redis_db="5", pool_enabled="false")
    front = svc.sibling("stranded_api", command="api")
    client = redis.Redis.from_url(svc.env["EXECUTOR_REDIS_URL"])
    try:
        async with started(svc) as api:
            agent_id = await api.register(["cat"])
            done = await api.run(agent_id, {"n": 0})
            assert done["status"] == "COMPLETED", done
        async with started(front) as api:  # no worker runs: its job waits in the stream
            status, waiting, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {"n": 1}})
            assert status == 202, waiting
        await client.xadd(STREAM, {"execution_id": done["id"]})  # a duplicate of a final execution
        given = await client.xreadgroup(GROUP, "older-worker", {STREAM: ">"}, count=10)
        assert len(given[0][1]) == 2, given
        await client.xgroup_delconsumer(STREAM, GROUP, "older-worker")
        assert await client.xlen(STREAM) == 2

        async with started(svc) as api:
            final = await wait_for(lambda: final_record(api, waiting["id"]), timeout=60)
            assert final["status"] == "COMPLETED" and final["output"] == {"n": 1}, final
            await _queue_drains(api)
    finally:
        await client.aclose()
