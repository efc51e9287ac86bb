"""Metered usage and cost end to end: believable figures for known workloads, and costs
that match the agent's pricing computed by hand, in the record and in the receipt."""

from __future__ import annotations

import math
import uuid
from fractions import Fraction

from tests.api.test_receipts import receipt_of, statement_of

MIB = 2**20
TOUCH_100_MB = ["sh", "-c", "awk 'BEGIN { s = sprintf(\"%104857600s\", \"\"); print \"{\\\"n\\\":\" length(s) \"}\" }'"]
# A CPU-time limit, not a wall clock: a loaded machine cannot shorten the loop's one CPU-second.
# Reads its input first, as the I/O contract has it: a pre-started container of an agent that
# burned its CPU before the claim would do that work unmetered (pool.md), and by the time it is
# claimed its second of CPU may be spent.
BUSY_1_S = ["sh", "-c", "cat > /dev/null; (ulimit -t 1; while :; do :; done); echo '{}'"]
SLEEP_1_S = ["sh", "-c", "sleep 1; echo '{}'"]


async def register_priced(api, command, pricing, limits) -> str:
    body = {"name": f"priced-{uuid.uuid4().hex[:12]}", "image": "executor/busybox:latest",
            "command": command, "input_schema": {"type": "object"}, "output_schema": True, "limits": limits,
            "pricing": pricing}
    status, agent, _ = await api.post("/v1/agents", json=body)
    assert status == 201, agent
    assert agent["pricing"]["currency"] == pricing["currency"]
    return agent["id"]


async def test_usage_is_believable_for_known_workloads(api) -> None:
    memory = await api.register(TOUCH_100_MB, limits={"memory_mb": 256, "timeout_s": 30})
    record = await api.run(memory, wait=40)
    assert record["status"] == "COMPLETED" and record["output"] == {"n": 104857600}, record
    assert 100 * MIB <= record["usage"]["peak_memory_bytes"] < 256 * MIB, record["usage"]

    busy = await api.register(BUSY_1_S, limits={"cpus": 1, "timeout_s": 10})
    record = await api.run(busy, wait=20)
    assert record["status"] == "COMPLETED", record
    assert 800 <= record["usage"]["cpu_ms"] <= 1300, record["usage"]

    idle = await api.register(SLEEP_1_S, limits={"timeout_s": 10})
    record = await api.run(idle, wait=20)
    assert record["status"] == "COMPLETED", record
    assert record["usage"]["cpu_ms"] < 100 and record["usage"]["wall_ms"] >= 1000, record["usage"]
    assert record["usage"]["input_bytes"] == 2 and record["usage"]["output_bytes"] == 3  # b"{}" and b"{}\n"


def by_hand(pricing: dict, usage: dict, memory_mb: int) -> int:
    exact = (pricing.get("per_call", 0) + Fraction(pricing.get("per_cpu_second", 0) * usage["cpu_ms"], 1000)
             + Fraction(pricing.get("per_mb_second", 0) * memory_mb * usage["wall_ms"], 1000)
             + Fraction(pricing.get("per_peak_mb", 0) * usage["peak_memory_bytes"], MIB))
    amount = math.ceil(exact)
    return min(amount, pricing["cap"]) if pricing.get("cap") is not None else amount


async def test_cost_follows_the_pricing_and_the_cap(api) -> None:
    limits = {"memory_mb": 64, "cpus": 1, "timeout_s": 10}
    for pricing in (
        {"currency": "USD", "per_call": 7, "per_cpu_second": 100, "per_mb_second": 1, "per_peak_mb": 3},
        {"currency": "EUR", "decimals": 6, "per_cpu_second": 1500},
        {"currency": "CREDITS", "decimals": 0, "per_call": 1, "per_cpu_second": 1000, "cap": 50},
    ):
        agent_id = await register_priced(api, BUSY_1_S, pricing, limits)
        record = await api.run(agent_id, wait=20)
        assert record["status"] == "COMPLETED", record
        expected = by_hand(pricing, record["usage"], limits["memory_mb"])
        capped = pricing.get("cap") is not None and expected == pricing["cap"]
        assert record["cost"] == {"currency": pricing["currency"], "decimals": pricing.get("decimals", 2),
                                  "amount": expected, "capped": capped}, (pricing, record["usage"], record["cost"])
        assert statement_of(await receipt_of(api, record["id"]))["cost"] == record["cost"]
    assert capped, f"the last pricing's cap was not reached: the test proves nothing about it: {record}"


async def test_a_failed_task_is_charged_and_a_cancelled_one_is_not(api) -> None:
    pricing = {"currency": "USD", "per_call": 5}
    failing = await register_priced(api, ["sh", "-c", "exit 4"], pricing, {"timeout_s": 10})
    record = await api.run(failing)
    assert record["status"] == "FAILED" and record["cost"]["amount"] == 5, record

    sleeper = await register_priced(api, ["sleep", "60"], pricing, {"timeout_s": 60})
    status, started, _ = await api.post("/v1/executions", json={"agent_id": sleeper, "input": {}})
    assert status == 202, started
    status, cancelled, _ = await api.post(f"/v1/executions/{started['id']}/cancel")
    assert status == 200 and cancelled["status"] == "CANCELLED", cancelled
    # Cancelled before it started costs nothing; cancelled while running, the call is charged.
    assert cancelled["cost"]["amount"] in (0, 5)
    assert (cancelled["cost"]["amount"] == 0) == (cancelled["started_at"] is None), cancelled
