"""A burst of submissions wider than the process's Redis connections waits for a free
connection instead of failing (CI once saw 503 queue_unavailable and FAILED platform_error
records: redis-py's pool raised "Too many connections" past its default of 100)."""

from __future__ import annotations

import asyncio

from tests.conftest import serving


async def test_a_burst_wider_than_the_redis_pool_is_accepted_whole(postgres, redis_server, images) -> None:
    async with serving(postgres, redis_server, "redis_pool", redis_db="9", redis_max_connections="4",
                       worker_concurrency="4", max_live_per_user="0") as (_, api):
        agent_id = await api.register(["cat"])

        async def submit(n: int) -> tuple[int, dict]:
            status, record, _ = await api.post("/v1/executions?wait=30", json={"agent_id": agent_id, "input": {"n": n}})
            return status, record

        answers = await asyncio.gather(*(submit(n) for n in range(60)))
        assert [status for status, _ in answers] == [201] * 60, [r for s, r in answers if s != 201][:3]
        assert all(record["status"] == "COMPLETED" for _, record in answers)
