"""Idempotency-Key end to end: racing replays make one execution and one charge."""

from __future__ import annotations

import asyncio
import uuid

from tests.conftest import Api

PROBLEM = "urn:executor:problem:"


async def test_20_racing_replays_make_one_execution_and_one_charge(market: Api) -> None:
    service = await market.new_token("service")
    user = await market.new_token("user")
    agent_id = await service.register(["sh", "-c", "sleep 0.5; cat"])
    status, priced, _ = await service.post(f"/v1/agents/{agent_id}/versions", json={
        "image": "executor/busybox:latest", "command": ["sh", "-c", "sleep 0.5; cat"],
        "input_schema": {"type": "object"}, "output_schema": True,
        "pricing": {"currency": "USD", "decimals": 2, "per_call": 25}})
    assert status == 201, priced
    grant = await service.grant(user.subject, agent_id, uses=5)
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    body = {"agent_id": agent_id, "input": {"order": 42}, "on_behalf_of": user.subject}

    answers = await asyncio.gather(*(service.post("/v1/executions", json=body, headers=key) for _ in range(20)))
    assert {status for status, _, _ in answers} <= {201, 202}, [a[1] for a in answers]
    assert len({record["id"] for _, record, _ in answers}) == 1
    replayed = [headers.get("Idempotent-Replayed") for _, _, headers in answers]
    assert replayed.count(None) == 1 and replayed.count("true") == 19
    (execution_id,) = {record["id"] for _, record, _ in answers}

    status, final, _ = await service.get(f"/v1/executions/{execution_id}?wait=30")
    assert final["status"] == "COMPLETED" and final["cost"]["amount"] == 25
    status, page, _ = await service.get(f"/v1/executions?user={user.subject}&agent_id={agent_id}")
    assert [r["id"] for r in page["items"]] == [execution_id]
    status, entitlements, _ = await service.get(f"/v1/entitlements?user={user.subject}")
    (after,) = [e for e in entitlements["items"] if e["id"] == grant["id"]]
    assert after["uses_consumed"] == 1 and after["uses_remaining"] == 4

    # A replay after the end answers the same final execution, and still charges nothing.
    status, again, headers = await service.post("/v1/executions?wait=5", json=body, headers=key)
    assert again["id"] == execution_id and headers["Idempotent-Replayed"] == "true" and status == 201

    status, problem, _ = await service.post("/v1/executions", json={**body, "input": {"order": 43}}, headers=key)
    assert status == 422 and problem["type"] == PROBLEM + "idempotency_key_reused", problem

    # Keys belong to their caller: the same key from another caller is another request.
    status, other, _ = await user.post("/v1/executions", json={"agent_id": agent_id, "input": {"order": 42}},
                                       headers=key)
    assert status == 202 and other["id"] != execution_id


async def test_a_refused_request_does_not_keep_its_key(market: Api) -> None:
    service = await market.new_token("service")
    user = await market.new_token("user")
    agent_id = await service.register(["cat"])
    key = {"Idempotency-Key": "retry-me"}
    body = {"agent_id": agent_id, "input": {}, "on_behalf_of": user.subject}
    status, problem, _ = await service.post("/v1/executions", json=body, headers=key)
    assert status == 403 and problem["type"] == PROBLEM + "entitlement_missing"
    await service.grant(user.subject, agent_id, uses=1)
    status, record, headers = await service.post("/v1/executions", json=body, headers=key)
    assert status == 202 and "Idempotent-Replayed" not in headers, record
    status, problem, _ = await service.post("/v1/executions", json=body, headers={"Idempotency-Key": "x" * 256})
    assert status == 422 and problem["errors"][0]["pointer"] == "header:Idempotency-Key"
