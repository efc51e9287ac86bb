"""Two Docker engines on one machine, one worker beside each, one API (issue 20, part 5).

The second engine (tests/second_engine.py) stands in for a second host. Under load, its
worker and its engine are killed together, as when the host dies: the jobs they held are
reclaimed through the stream by the other worker, and every submission still ends exactly
once (one final state, one receipt, one log leaf, one entitlement use, one charge). When the
engine and its worker come back, the worker removes the containers its previous life left on
that engine."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import asyncpg
import docker
import pytest

from runtimes.base import EXECUTION_LABEL, INSTANCE_LABEL
from tests.api.conftest import final_record, wait_for
from tests.api.test_crash_recovery import _queue_drains
from tests.conftest import Api, ServiceProcess, listed_containers, make_service, private_tmpdir
from tests.second_engine import SecondEngine, copy_images

pytestmark = pytest.mark.e2e

TOTAL = 48  # submissions
CLIENTS = 6  # closed-loop clients: fewer than the 2 x 4 slots, so both workers take jobs
PER_CALL = 5  # the agent's price, in cents


@pytest.fixture(scope="module")
def second_engine(docker_client: docker.DockerClient, images: dict[str, str]) -> Iterator[SecondEngine]:
    """A second dockerd with nothing of the first's, holding a copy of the busybox task image
    (same image id: agent versions are pinned to it). Stopped and deleted whatever happens;
    a dockerd that does not start fails the test with its log."""
    engine = SecondEngine(private_tmpdir("executor-test-engine2-"))
    try:
        engine.start()
        with contextlib.closing(engine.client()) as client:
            copy_images(docker_client, client, [images["busybox"]])
        yield engine
    finally:
        engine.stop()
        engine.remove()


async def _load(service: Api, agent_id: str, accepted: dict[int, str]) -> None:
    """TOTAL submissions from CLIENTS closed-loop clients, each waiting for its final record.
    Each carries an Idempotency-Key, so a retried submission is still one execution."""
    numbers = iter(range(TOTAL))

    async def client() -> None:
        for n in numbers:
            body = {"agent_id": agent_id, "input": {"n": n}, "on_behalf_of": "kim"}
            while True:
                status, record, _ = await service.post("/v1/executions", json=body,
                                                       headers={"Idempotency-Key": f"two-engines-{n}"})
                if status not in (502, 503):
                    break
                await asyncio.sleep(0.2)
            assert status in (200, 201, 202), (n, status, record)
            accepted[n] = record["id"]
            await wait_for(lambda e=record["id"]: final_record(service, e), timeout=120)

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


def _task_containers_of(client: docker.DockerClient, instance_id: str, *, running_only: bool = False) -> list[Any]:
    """The task containers (not the pre-started ones) of one worker on one engine."""
    return [c for c in listed_containers(client, running_only=running_only, label=f"{INSTANCE_LABEL}={instance_id}")
            if EXECUTION_LABEL in c["Labels"]]


async def test_work_spreads_survives_a_lost_engine_and_its_leftovers_go(
        postgres, redis_server, images, docker_client: docker.DockerClient, second_engine: SecondEngine) -> None:
    front = make_service(postgres, redis_server, "twoeng", redis_db="10", worker_concurrency="4",
                         job_visibility_s="3",  # reclaimed 3 to 4.5 s after the last renewal
                         max_attempts="3", user_burst="1000", user_rate_per_s="1000", service_burst="1000",
                         service_rate_per_s="1000", max_live_per_user="0")
    front.command = "api"
    worker1 = front.sibling("twoeng_w1", command="worker")  # on the machine's engine
    worker2 = front.sibling("twoeng_w2", command="worker")
    worker2.env["DOCKER_HOST"] = second_engine.url
    engine2 = second_engine.client()
    db = await asyncpg.connect(front.env["EXECUTOR_DATABASE_URL"])
    processes: list[ServiceProcess] = [front, worker1, worker2]
    try:
        for process in processes:
            await asyncio.to_thread(process.start)
        async with aiohttp.ClientSession() as session:
            operator = Api(session, front.base_url, front.operator_token)
            service = await operator.new_token("service")
            status, agent, _ = await service.post("/v1/agents", json={
                "name": f"two-engines-{uuid.uuid4().hex[:8]}", "image": images["busybox"],
                "command": ["sh", "-c", "sleep 0.5; cat"], "input_schema": {"type": "object"},
                "output_schema": True, "pricing": {"currency": "EUR", "decimals": 2, "per_call": PER_CALL}})
            assert status == 201, agent
            await service.grant("kim", agent["id"], uses=TOTAL)
            accepted: dict[int, str] = {}
            loader = asyncio.create_task(_load(service, agent["id"], accepted))

            async def engine2_busy() -> bool:
                # Engine 2 has finished some work and runs a task now: the kill cuts one off.
                if loader.done():
                    loader.result()  # a failed load says why
                    return False
                done_there = await db.fetchval(
                    "SELECT count(*) FROM executions WHERE status = 'COMPLETED' AND worker = $1", worker2.instance_id)
                return done_there >= 2 and bool(_task_containers_of(engine2, worker2.instance_id, running_only=True))

            await wait_for(engine2_busy, timeout=60, interval=0.05)
            # The host dies: its worker and its engine at once.
            worker2.stop("KILL")
            await asyncio.to_thread(second_engine.kill)
            await asyncio.wait_for(loader, 180)
            for n, execution_id in accepted.items():
                final = await operator.execution(execution_id)
                assert final["status"] == "COMPLETED" and final["output"] == {"n": n}, final
            await _queue_drains(operator)

        # 1. The work spread over both engines (the worker that finished each execution).
        by_worker = dict(await db.fetch("SELECT worker, count(*) FROM executions GROUP BY worker"))
        assert set(by_worker) == {worker1.instance_id, worker2.instance_id}, by_worker
        # 2. The cut-off runs moved to worker 1 and ran again there; nothing lost, doubled or charged twice.
        moved = await db.fetch("SELECT worker FROM executions WHERE attempts > 1")
        assert moved, "no execution was cut off by the kill: the test tested nothing"
        assert {row["worker"] for row in moved} == {worker1.instance_id}, moved
        assert len(set(accepted.values())) == TOTAL
        assert await db.fetchval("SELECT count(*) FROM executions") == TOTAL  # 0 doubled
        assert await db.fetchval("SELECT count(*) FROM executions WHERE status = 'COMPLETED'") == TOTAL  # 0 lost
        assert await db.fetchval("SELECT count(*) FROM receipts") == \
            await db.fetchval("SELECT count(DISTINCT execution_id) FROM receipts") == TOTAL
        assert await db.fetchval("SELECT size FROM log_state") == TOTAL
        assert await db.fetchval("SELECT uses_consumed FROM entitlements WHERE user_subject = 'kim'") == TOTAL
        assert await db.fetchval("SELECT sum((cost->>'amount')::int) FROM executions") == PER_CALL * TOTAL

        # 3. Engine 2 back: the killed worker's containers are still there, until it starts again.
        await asyncio.to_thread(second_engine.start)
        left = {c["Id"] for c in listed_containers(engine2, label=f"{INSTANCE_LABEL}={worker2.instance_id}")}
        assert _task_containers_of(engine2, worker2.instance_id), f"the kill left no task container: {left}"
        await asyncio.to_thread(worker2.start)  # ready only after its recovery (worker.recover) ran
        still = {c["Id"] for c in listed_containers(engine2)} & left  # its new pool's are not counted
        assert not still, f"worker 2 left {len(still)} of its previous life's {len(left)} container(s)"
    finally:
        for process in reversed(processes):
            process.stop()
        await db.close()
        engine2.close()
    # Stopped with SIGTERM, worker 2 removed its pre-started containers too: engine 2 is empty of it.
    with contextlib.closing(second_engine.client()) as client:
        assert listed_containers(client, label=f"{INSTANCE_LABEL}={worker2.instance_id}") == []
