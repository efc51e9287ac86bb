"""A worker killed at random points of a run, 20 times: every execution ends exactly once,
with one receipt, one log leaf and one charge, and no container is left behind.

An API-only process takes the submissions (a dying worker must not take the HTTP answer
with it). Each round starts a victim worker armed to die at one point (EXECUTOR_FAULT_POINTS, or a
SIGKILL from here once its task's container runs), submits one execution, lets it die,
then recovers it: by restarting the victim without faults (its own recovery at start) or
by starting a rescuer worker that reclaims the job after the visibility timeout."""

from __future__ import annotations

import random
import uuid

import aiohttp
import asyncpg
import docker

from runtimes.base import INSTANCE_LABEL
from tests.api.conftest import final_record, wait_for
from tests.conftest import Api, listed_containers, make_service, wait_until_running

POINTS = ["before_claim", "after_start", "after_output", "before_commit"]
ROUNDS = 20


async def test_killing_a_worker_at_random_points_loses_and_doubles_nothing(
        postgres, redis_server, images, docker_client: docker.DockerClient) -> None:
    rng = random.Random(20261201)
    plan = [POINTS[i % len(POINTS)] for i in range(ROUNDS)]
    rng.shuffle(plan)
    base = make_service(postgres, redis_server, "faults", redis_db="11", job_visibility_s="2", pool_enabled="false",
                        max_attempts="3")
    base.command = "api"
    victim_id = f"test-victim-{uuid.uuid4().hex[:8]}"
    db = await asyncpg.connect(base.env["EXECUTOR_DATABASE_URL"])
    executions: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            base.start()
            operator = Api(session, base.base_url, base.operator_token)
            service = await operator.new_token("service")
            status, agent, _ = await service.post("/v1/agents", json={
                "name": f"faulty-{uuid.uuid4().hex[:8]}", "image": "executor/busybox:latest",
                "command": ["sh", "-c", "sleep 0.3; cat"], "input_schema": {"type": "object"}, "output_schema": True,
                "pricing": {"currency": "EUR", "decimals": 2, "per_call": 5}})
            assert status == 201, agent
            agent_id = agent["id"]
            await service.grant("erin", agent_id, uses=ROUNDS)
            for round_number, point in enumerate(plan):
                victim = base.sibling("victim", command="worker", instance_id=victim_id,
                                      **({"fault_points": point} if point != "after_start" else {}))
                victim.start()
                status, record, _ = await service.post("/v1/executions", json={
                    "agent_id": agent_id, "input": {"round": round_number}, "on_behalf_of": "erin"})
                assert status == 202, record
                executions.append(record["id"])
                if point == "after_start":
                    await wait_until_running(docker_client, record["id"])
                    victim.stop("KILL")
                else:
                    assert victim.wait_for_exit(60) == 137, f"round {round_number}: no death at {point}"
                # Recover: the victim itself restarted, or another worker reclaiming the job.
                if round_number % 2:
                    rescuer = base.sibling("victim", command="worker", instance_id=victim_id)
                else:
                    rescuer = base.sibling(f"rescuer{round_number}", command="worker")
                rescuer.start()
                try:
                    final = await wait_for(lambda execution_id=record["id"]: final_record(service, execution_id),
                                           timeout=60)
                    assert final["status"] == "COMPLETED" and final["output"] == {"round": round_number}, \
                        (point, final)
                finally:
                    rescuer.stop()
            last = base.sibling("victim", command="worker", instance_id=victim_id)
            last.start()  # the victim's last orphans go when it comes back
            last.stop()
            base.stop()

        ids = [uuid.UUID(e) for e in executions]
        rows = await db.fetch("SELECT status, attempts FROM executions WHERE id = ANY($1)", ids)
        assert len(rows) == ROUNDS and {r["status"] for r in rows} == {"COMPLETED"}
        assert await db.fetchval("SELECT count(*) FROM receipts WHERE execution_id = ANY($1)", ids) == ROUNDS
        assert await db.fetchval("SELECT count(DISTINCT execution_id) FROM receipts") == \
            await db.fetchval("SELECT count(*) FROM receipts") == await db.fetchval("SELECT size FROM log_state")
        assert await db.fetchval("SELECT uses_consumed FROM entitlements WHERE user_subject = 'erin'") == ROUNDS
        # One charge each: the cost is written once, with the final state.
        assert await db.fetchval("SELECT sum((cost->>'amount')::int) FROM executions WHERE id = ANY($1)",
                                 ids) == 5 * ROUNDS
        leftovers = listed_containers(docker_client, label=f"{INSTANCE_LABEL}={victim_id}")
        assert leftovers == [], [c["Labels"] for c in leftovers]
        assert [c for c in listed_containers(docker_client, label=INSTANCE_LABEL)
                if "rescuer" in c["Labels"].get(INSTANCE_LABEL, "")] == []
    finally:
        base.stop()
        await db.close()
