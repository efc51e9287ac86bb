"""Rate limits (GCRA in Redis) and the per-user cap on live executions, through HTTP."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from tests.conftest import serving
from tests.observability.promtext import parse

PROBLEM = "urn:executor:problem:"


async def refusals(operator) -> dict[str, float]:
    """executor_admission_refusals_total by reason, from /metrics."""
    status, text, _ = await operator.get("/metrics")
    assert status == 200, text
    found = parse(text.decode()).series("executor_admission_refusals_total")
    return {labels["reason"]: value for labels, value in found}


async def test_429_with_retry_after_past_the_rate(postgres, redis_server, images) -> None:
    async with serving(postgres, redis_server, "rate", redis_db="8", user_rate_per_s="0.5", user_burst="3",
                       service_rate_per_s="1", service_burst="4") as (_, operator):
        service = await operator.new_token("service")
        user = await operator.new_token("user")
        agent_id = await service.register(["cat"])
        await service.grant(user.subject, agent_id)
        run = {"agent_id": agent_id, "input": {}}

        for remaining in (2, 1, 0):
            status, _, headers = await user.post("/v1/executions", json=run)
            assert status == 202
            assert headers["RateLimit-Policy"] == '"user";q=3;w=6'
            assert headers["RateLimit"].startswith(f'"user";r={remaining};t=')
        status, problem, headers = await user.post("/v1/executions", json=run)
        assert status == 429 and problem["type"] == PROBLEM + "rate_limited", problem
        retry_after = int(headers["Retry-After"])
        assert 1 <= retry_after <= 2 and headers["RateLimit"].startswith('"user";r=0;')
        await asyncio.sleep(retry_after)
        status, _, _ = await user.post("/v1/executions", json=run)
        assert status == 202

        # A service's own bucket, and its users' buckets when it acts for them.
        for _ in range(4):
            status, _, headers = await service.post("/v1/executions", json=run)
            assert status == 202 and headers["RateLimit-Policy"] == '"service";q=4;w=4'
        status, problem, headers = await service.post("/v1/executions", json=run)
        assert status == 429 and int(headers["Retry-After"]) >= 1
        status, problem, headers = await operator.post("/v1/executions", json=run)
        assert status == 202 and "RateLimit" not in headers  # operators are not limited
        assert await refusals(operator) == {"rate_limited": 2, "too_many_live_executions": 0, "queue_full": 0}


async def test_the_per_user_cap_on_live_executions_holds_under_load(postgres, redis_server, images) -> None:
    cap = 3
    async with serving(postgres, redis_server, "cap", redis_db="9", max_live_per_user=str(cap),
                       user_rate_per_s="1000", user_burst="1000") as (svc, operator):
        db = await asyncpg.connect(svc.env["EXECUTOR_DATABASE_URL"])
        service = await operator.new_token("service")
        user = await operator.new_token("user")
        other = await operator.new_token("user")
        agent_id = await service.register(["sh", "-c", "sleep 0.5; cat"])
        for who in (user, other):
            await service.grant(who.subject, agent_id)
        accepted: list[str] = []
        refused = 0
        most_live = 0
        deadline = time.monotonic() + 6

        async def submitter() -> None:
            nonlocal refused
            while time.monotonic() < deadline:
                status, body, headers = await user.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
                if status == 202:
                    accepted.append(body["id"])
                else:
                    assert status == 429 and body["type"] == PROBLEM + "too_many_live_executions", body
                    assert headers["Retry-After"] == "1"
                    refused += 1
                    await asyncio.sleep(0.05)

        async def monitor() -> None:
            nonlocal most_live
            while time.monotonic() < deadline + 1:
                # One statement: a consistent snapshot of the user's live executions.
                live = await db.fetchval("SELECT count(*) FROM executions WHERE owner = $1"
                                         " AND status IN ('PENDING', 'RUNNING')", f"user:{user.subject}")
                most_live = max(most_live, live)
                await asyncio.sleep(0.02)

        try:
            await asyncio.gather(monitor(), *(submitter() for _ in range(12)))
        finally:
            await db.close()
        assert 0 < most_live <= cap, most_live
        assert len(accepted) > cap and refused > 0  # the cap frees as executions end
        assert (await refusals(operator))["too_many_live_executions"] == refused
        # Another user is not held by this one's cap.
        status, record, _ = await other.post("/v1/executions?wait=30", json={"agent_id": agent_id, "input": {}})
        assert status == 201 and record["status"] == "COMPLETED"
        for execution_id in accepted:
            status, record, _ = await user.get(f"/v1/executions/{execution_id}?wait=30")
            assert record["status"] == "COMPLETED"
