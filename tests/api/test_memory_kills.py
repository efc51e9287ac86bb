"""Memory kills under load (issue 15, family 8): every task the kernel kills at its memory
limit ends `memory_limit_exceeded`, however many run at once.

The engine's `State.OOMKilled` is not a reliable source: under load its shim sometimes never
reports the OOM (the container's cgroup is gone first), so a bomb ended `nonzero_exit` with
exit 137. The service now reads the task's own cgroup (runtimes/metering.py). 200 bombs at
once, small ones (16 MB), with a normal task among them that must still complete.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from tests.api.conftest import final_record, wait_for
from tests.conftest import serving

BOMBS = 200
SETTINGS = {
    "redis_db": "15",
    "user_burst": "1000", "user_rate_per_s": "1000", "service_burst": "1000", "service_rate_per_s": "1000",
    "max_live_per_user": "0",
    "worker_concurrency": "32",  # many kills at once: the race showed with concurrency
}


async def test_concurrent_memory_bombs_all_end_memory_limit_exceeded(postgres, redis_server, images) -> None:
    async with serving(postgres, redis_server, "oom", **SETTINGS) as (_, api):
        bomb = await api.register(["sh", "-c", "tail /dev/zero"], limits={"memory_mb": 16, "timeout_s": 120})
        counter = await api.register(None, image=images["wordcount"])

        async def submit(agent_id: str, input: Any) -> str:
            status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": input})
            assert status == 202, record
            return record["id"]

        half = BOMBS // 2
        ids = await asyncio.gather(*(submit(bomb, {}) for _ in range(half)))
        normal = await submit(counter, {"text": "still counted right"})
        ids += await asyncio.gather(*(submit(bomb, {}) for _ in range(BOMBS - half)))

        slots = asyncio.Semaphore(32)

        async def final(execution_id: str) -> dict[str, Any]:
            async with slots:
                return await wait_for(lambda: final_record(api, execution_id), timeout=900)

        records = await asyncio.gather(*(final(i) for i in ids))
        outcomes = Counter((r["status"], (r["error"] or {}).get("type")) for r in records)
        wrong = [(r["id"], r["status"], r["error"], r["exit_code"], r["usage"]) for r in records
                 if (r["status"], (r["error"] or {}).get("type")) != ("FAILED", "memory_limit_exceeded")]
        assert not wrong, f"outcomes {dict(outcomes)}; misclassified (first 5): {wrong[:5]}"

        done = await final(normal)
        assert done["status"] == "COMPLETED" and done["output"] == {"words": 3, "lines": 0, "chars": 19}, done
