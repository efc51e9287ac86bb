"""`executor deliveries list|resend`, on a service of its own whose webhooks fail at once (one
attempt, to a port nothing listens on)."""

from __future__ import annotations

import asyncio
import time

from executor.embedded import free_port
from tests.cli.conftest import as_json, client_env, one_line_error, run
from tests.conftest import serving


async def test_list_then_resend_a_failed_delivery(postgres, redis_server, images) -> None:
    async with serving(postgres, redis_server, "clihooks", redis_db="9", webhook_allow_private="true",
                       webhook_max_attempts="1", webhook_poll_s="0.2", webhook_timeout_s="2") as (svc, api):
        env = client_env(svc)
        agent_id = await api.register(["cat"])
        status, record, _ = await api.post("/v1/executions?wait=30", json={
            "agent_id": agent_id, "input": {}, "webhook_url": f"http://127.0.0.1:{free_port()}/hook"})
        assert status == 201, record

        deadline = time.monotonic() + 30
        while True:
            deliveries = as_json(await asyncio.to_thread(run, "deliveries", "list", record["id"], "--json", env=env))
            if (deliveries and deliveries[0]["status"] == "failed") or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        (delivery,) = deliveries
        assert delivery["status"] == "failed" and delivery["attempt_count"] == 1, delivery
        table = await asyncio.to_thread(run, "deliveries", "list", record["id"], env=env)
        assert table.stdout.splitlines()[0].split()[:3] == ["ID", "EVENT", "STATUS"] and "failed" in table.stdout

        resent = as_json(await asyncio.to_thread(run, "deliveries", "resend", record["id"], delivery["id"], "--json",
                                                 env=env))
        assert resent["id"] == delivery["id"] and resent["status"] in ("pending", "failed")
        if resent["status"] == "pending":  # a resend of a pending delivery is a conflict (exit 1)
            again = await asyncio.to_thread(run, "deliveries", "resend", record["id"], delivery["id"], env=env)
            assert again.returncode in (0, 1), again.stderr
            if again.returncode == 1:
                one_line_error(again, 1, "conflict")
        one_line_error(await asyncio.to_thread(run, "deliveries", "resend", record["id"],
                                               "0b5c1a52-6f0e-4c8e-9a55-2f1d8f7e0c11", env=env), 5, "not_found")
