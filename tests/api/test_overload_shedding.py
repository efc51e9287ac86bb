"""Past the queue-wait bound (EXECUTOR_MAX_QUEUE_WAIT_S, executor/executions/shedding.py) a
flood is refused with 503 queue_full and Retry-After, and everything accepted still ends final.

One worker slot and a task of a second make overload cheap: a few submissions are more than it
can start within the bound. No timing is asserted: the flood goes on until it is refused."""

from __future__ import annotations

import asyncio

from tests.conftest import serving

PROBLEM = "urn:executor:problem:"
FINAL = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"}


async def test_a_flood_past_the_wait_bound_is_shed_and_nothing_accepted_is_lost(
        postgres, redis_server, images) -> None:
    async with serving(postgres, redis_server, "shedding", redis_db="14", worker_concurrency="1",
                       pool_enabled="false", max_queue_wait_s="1") as (_, api):
        agent_id = await api.register(["sh", "-c", "sleep 1; cat"])
        accepted: list[str] = []
        refusals: list[tuple[dict, dict]] = []
        for i in range(200):  # far more than one slot runs while the head waits 1 s
            status, body, headers = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {"i": i}})
            if status == 202:
                accepted.append(body["id"])
            else:
                assert status == 503, body
                refusals.append((body, headers))
                if len(refusals) >= 3:
                    break
            await asyncio.sleep(0.1)
        assert refusals, f"{len(accepted)} accepted and none refused"
        for problem, headers in refusals:
            assert problem["type"] == PROBLEM + "queue_full", problem
            assert "wait more than 1 s" in problem["detail"], problem
            assert 1 <= int(headers["Retry-After"]) <= 30, headers
        assert accepted, "the first submissions are within the bound"
        # Just refused at normal priority: a batch's low item is refused too (its bound is half),
        # each item on its own, with the same problem.
        status, batch, _ = await api.post("/v1/executions/batch", json={"items": [
            {"agent_id": agent_id, "input": {"batch": 1}, "priority": "low"}]})
        assert status == 200, batch
        (item,) = batch["items"]
        assert item["status"] == 503 and item["problem"]["type"] == PROBLEM + "queue_full", item
        assert "a low job would wait more than 0.5 s" in item["problem"]["detail"], item

        for execution_id in accepted:  # nothing accepted is lost: each ends, and completes
            record = None
            for _ in range(20):
                status, record, _ = await api.get(f"/v1/executions/{execution_id}?wait=30")
                if record["status"] in FINAL:
                    break
            assert record is not None and record["status"] == "COMPLETED", record

        # Drained, the queue admits again.
        status, record, _ = await api.post("/v1/executions?wait=30", json={"agent_id": agent_id, "input": {}})
        assert status == 201 and record["status"] == "COMPLETED", record
