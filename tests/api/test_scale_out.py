"""Several workers on one database and Redis: a dead worker's job is reclaimed and run on
another, exactly once; backpressure past the queue bound; a worker's memory budget."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import asyncpg
import docker

from runtimes.base import EXECUTION_LABEL, INSTANCE_LABEL
from tests.api.conftest import final_record, wait_for
from tests.conftest import (
    Api,
    listed_containers,
    make_service,
    serving,
    started,
    wait_until_running,
)

PROBLEM = "urn:executor:problem:"


async def _one(db: asyncpg.Connection, sql: str, *args: object) -> object:
    return await db.fetchval(sql, *args)


async def test_a_dead_workers_job_is_reclaimed_and_run_on_another(
        postgres, redis_server, images, docker_client: docker.DockerClient) -> None:
    first = make_service(postgres, redis_server, "reclaim_a", redis_db="10", job_visibility_s="2",
                         pool_enabled="false")
    second = first.sibling("reclaim_b")
    first.start()
    db = await asyncpg.connect(first.env["EXECUTOR_DATABASE_URL"])
    try:
        async with aiohttp.ClientSession() as session:
            operator = Api(session, first.base_url, first.operator_token)
            service = await operator.new_token("service")
            agent_id = await service.register(["sh", "-c", "sleep 3; cat"])
            await service.grant("dora", agent_id, uses=3)
            status, record, _ = await service.post("/v1/executions", json={
                "agent_id": agent_id, "input": {"n": 1}, "on_behalf_of": "dora"})
            assert status == 202
            label = await wait_until_running(docker_client, record["id"])
            (container,) = listed_containers(docker_client, label=label)
            assert container["Labels"][INSTANCE_LABEL] == first.instance_id

            first.stop("KILL")  # mid-run: its job stays in the stream, unacked and no longer renewed
            second.start()
            on_second = Api(session, second.base_url, first.operator_token)
            final = await wait_for(lambda: final_record(on_second, record["id"]), timeout=60)
            assert final["status"] == "COMPLETED" and final["output"] == {"n": 1}, final
            assert final["worker"] == second.instance_id and final["attempts"] == 2
            # Exactly one end: one receipt, one log leaf, one use of the entitlement.
            assert await _one(db, "SELECT count(*) FROM receipts WHERE execution_id = $1", uuid.UUID(final["id"])) == 1
            assert await _one(db, "SELECT size FROM log_state") == await _one(db, "SELECT count(*) FROM receipts")
            assert await _one(db, "SELECT uses_consumed FROM entitlements WHERE user_subject = 'dora'") == 1

            # The dead worker's container is removed when its host's worker comes back.
            first.start()
            assert listed_containers(docker_client, label=label) == []
    finally:
        await db.close()
        second.stop()
        first.stop()


async def test_past_the_queue_bound_submissions_get_503_with_retry_after(postgres, redis_server, images) -> None:
    async with serving(postgres, redis_server, "backpressure", redis_db="12", max_queue_depth="3",
                       worker_concurrency="1", pool_enabled="false") as (_, api):
        agent_id = await api.register(["sh", "-c", "sleep 1; cat"])
        accepted = []
        for i in range(3):
            status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {"i": i}})
            assert status == 202, record
            accepted.append(record["id"])
        status, problem, headers = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
        assert status == 503 and problem["type"] == PROBLEM + "queue_full", problem
        assert 1 <= int(headers["Retry-After"]) <= 30
        for execution_id in accepted:  # nothing accepted is lost, and the bound frees as they end
            status, record, _ = await api.get(f"/v1/executions/{execution_id}?wait=30")
            assert record["status"] == "COMPLETED"
        status, record, _ = await api.post("/v1/executions?wait=30", json={"agent_id": agent_id, "input": {}})
        assert status == 201 and record["status"] == "COMPLETED"


async def test_a_worker_runs_only_what_fits_its_memory_budget(postgres, redis_server, images) -> None:
    svc = make_service(postgres, redis_server, "memory", redis_db="12", worker_memory_mb="100",
                       worker_concurrency="4", pool_enabled="false")
    db = await asyncpg.connect(svc.env["EXECUTOR_DATABASE_URL"])
    try:
        async with started(svc) as api:
            agent_id = await api.register(["sh", "-c", "sleep 0.5; cat"], limits={"memory_mb": 64})
            ids = []
            for _ in range(4):
                status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
                assert status == 202, record
                ids.append(record["id"])
            most = 0
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                running = await db.fetchval("SELECT count(*) FROM executions WHERE status = 'RUNNING'")
                most = max(most, running)
                if await db.fetchval("SELECT count(*) FROM executions WHERE status IN ('PENDING', 'RUNNING')") == 0:
                    break
                await asyncio.sleep(0.02)
            assert most == 1, most  # 2 × 64 MB would not fit in 100 MB
            assert await db.fetchval("SELECT count(*) FROM executions WHERE status = 'COMPLETED'") == 4
    finally:
        await db.close()


async def test_no_leftover_containers_of_these_tests(docker_client: docker.DockerClient) -> None:
    ours = ("test-reclaim_", "test-backpressure", "test-memory")
    leftovers = [c for c in listed_containers(docker_client, label=EXECUTION_LABEL)
                 if c["Labels"].get(INSTANCE_LABEL, "").startswith(ours)]
    assert leftovers == []
