"""Entitlements end to end: granted by the service, one use taken atomically per accepted
execution, given back only when the platform failed."""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import docker

from tests.api.conftest import wait_for
from tests.conftest import Api

PROBLEM = "urn:executor:problem:"


async def _entitlement(api: Api, entitlement_id: str, user: str) -> dict[str, Any]:
    status, page, _ = await api.get(f"/v1/entitlements?user={user}")
    assert status == 200, page
    (found,) = [e for e in page["items"] if e["id"] == entitlement_id]
    return found


async def _final(api: Api, execution_id: str) -> dict[str, Any]:
    status, record, _ = await api.get(f"/v1/executions/{execution_id}?wait=30")
    assert status == 200 and record["status"] not in ("PENDING", "RUNNING"), record
    return record


async def test_100_concurrent_requests_against_a_10_use_entitlement(market: Api) -> None:
    service = await market.new_token("service")
    user = await market.new_token("user")
    agent_id = await service.register(["cat"])
    granted = await service.grant(user.subject, agent_id, uses=10)
    assert granted["uses_remaining"] == 10 and granted["state"] == "live"

    async def submit(i: int) -> tuple[int, Any]:
        status, body, _ = await user.post("/v1/executions", json={"agent_id": agent_id, "input": {"i": i}})
        return status, body

    answers = await asyncio.gather(*(submit(i) for i in range(100)))
    accepted = [body for status, body in answers if status in (201, 202)]
    refused = [body for status, body in answers if status == 403]
    assert len(accepted) == 10 and len(refused) == 90, sorted({s for s, _ in answers})
    assert {p["type"] for p in refused} == {PROBLEM + "entitlement_used_up"}
    assert {r["entitlement_id"] for r in accepted} == {granted["id"]}
    after = await _entitlement(service, granted["id"], user.subject)
    assert after["uses_remaining"] == 0 and after["uses_consumed"] == 10 and after["state"] == "used_up"
    records = [await _final(user, r["id"]) for r in accepted]
    assert {r["status"] for r in records} == {"COMPLETED"}
    assert sorted(r["output"]["i"] for r in records) == sorted(r["input"]["i"] for r in accepted)
    assert (await _entitlement(service, granted["id"], user.subject))["uses_remaining"] == 0


async def test_missing_expired_and_revoked_entitlements_are_refused(market: Api) -> None:
    service = await market.new_token("service")
    user = await market.new_token("user")
    agent_id = await service.register(["cat"])
    run = {"agent_id": agent_id, "input": {}}

    status, problem, _ = await user.post("/v1/executions", json=run)
    assert status == 403 and problem["type"] == PROBLEM + "entitlement_missing", problem

    expired = await service.grant(user.subject, agent_id, expires_at="2020-01-01T00:00:00Z")
    assert expired["state"] == "expired"
    status, problem, _ = await user.post("/v1/executions", json=run)
    assert status == 403 and problem["type"] == PROBLEM + "entitlement_expired", problem

    live = await service.grant(user.subject, agent_id, expires_at="2999-01-01T00:00:00Z")
    assert live["id"] == expired["id"] and live["state"] == "live"  # PUT set the terms anew
    assert (await user.run(agent_id, {"ok": 1}))["status"] == "COMPLETED"

    status, revoked, _ = await service.request("DELETE", f"/v1/entitlements/{live['id']}")
    assert status == 200 and revoked["state"] == "revoked" and revoked["revoked_at"]
    status, problem, _ = await user.post("/v1/executions", json=run)
    assert status == 403 and problem["type"] == PROBLEM + "entitlement_revoked", problem

    regranted = await service.grant(user.subject, agent_id, uses=1)
    assert regranted["id"] != live["id"]  # a revoked grant stays revoked; a new one starts
    assert (await user.run(agent_id))["status"] == "COMPLETED"
    status, problem, _ = await user.post("/v1/executions", json=run)
    assert status == 403 and problem["type"] == PROBLEM + "entitlement_used_up", problem


async def test_an_agent_failure_uses_the_entitlement_a_platform_failure_gives_it_back(
        market: Api, docker_client: docker.DockerClient) -> None:
    service = await market.new_token("service")
    user = await market.new_token("user")
    failing = await service.register(["sh", "-c", "echo broken >&2; exit 3"])
    grant = await service.grant(user.subject, failing, uses=2)
    record = await user.run(failing)
    assert record["status"] == "FAILED" and record["error"]["type"] == "nonzero_exit", record
    after = await _entitlement(service, grant["id"], user.subject)
    assert after["uses_remaining"] == 1 and after["uses_consumed"] == 1

    # An image that vanishes from the engine after registration: the task cannot start.
    tag = f"executor/test-vanishing:{uuid.uuid4().hex[:8]}"
    dockerfile = f"FROM executor/busybox:latest\nLABEL org.executor.test={tag.split(':')[1]}\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    vanishing = await service.register(["cat"], image=tag)
    docker_client.images.remove(tag, force=True)
    grant = await service.grant(user.subject, vanishing, uses=1)
    record = await user.run(vanishing)
    assert record["status"] == "FAILED" and record["error"]["type"] == "platform_error", record
    assert record["cost"] is None or record["cost"]["amount"] == 0
    after = await wait_for(lambda: _back(service, grant["id"], user.subject))
    assert after["uses_remaining"] == 1 and after["uses_consumed"] == 0 and after["state"] == "live"


async def _back(api: Api, entitlement_id: str, user: str) -> dict[str, Any] | None:
    found = await _entitlement(api, entitlement_id, user)
    return found if found["uses_remaining"] == 1 else None


async def test_cancelling_before_the_start_gives_the_use_back(market: Api) -> None:
    service = await market.new_token("service")
    user = await market.new_token("user")
    slow = await service.register(["sh", "-c", "sleep 5; cat"])
    grant = await service.grant(user.subject, slow, uses=3)
    # Cancelled at once: either it never started (the use comes back) or it had started
    # and was killed (the use is kept). The record says which; the count must agree.
    status, record, _ = await user.post("/v1/executions", json={"agent_id": slow, "input": {}})
    assert status == 202
    status, cancelled, _ = await user.post(f"/v1/executions/{record['id']}/cancel")
    assert status == 200, cancelled
    final = await _final(user, record["id"])
    assert final["status"] == "CANCELLED"
    after = await _entitlement(service, grant["id"], user.subject)
    never_started = final["started_at"] is None
    assert after["uses_remaining"] == (3 if never_started else 2), (final, after)


async def test_who_sees_and_grants_entitlements(market: Api) -> None:
    service = await market.new_token("service")
    user = await market.new_token("user")
    other_user = await market.new_token("user")
    agent_id = await service.register(["cat"])
    mine = await service.grant(user.subject, agent_id)
    await service.grant(other_user.subject, agent_id, uses=5)
    assert mine["uses"] is None and mine["uses_remaining"] is None  # unlimited

    status, page, _ = await user.get("/v1/entitlements")
    assert status == 200 and [e["id"] for e in page["items"]] == [mine["id"]]
    status, problem, _ = await user.get(f"/v1/entitlements?user={other_user.subject}")
    assert status == 403 and problem["type"] == PROBLEM + "forbidden"
    status, page, _ = await service.get(f"/v1/entitlements?agent_id={agent_id}")
    assert status == 200 and len(page["items"]) == 2

    status, problem, _ = await user.request("PUT", "/v1/entitlements",
                                            json={"user": user.subject, "agent_id": agent_id})
    assert status == 403 and problem["type"] == PROBLEM + "forbidden"
    status, problem, _ = await user.request("DELETE", f"/v1/entitlements/{mine['id']}")
    assert status == 403
    for bad, pointer in (({"user": "", "agent_id": agent_id}, "/user"),
                         ({"user": "u", "agent_id": agent_id, "uses": -1}, "/uses"),
                         ({"user": "u", "agent_id": agent_id, "uses": 1.5}, "/uses"),
                         ({"user": "u", "agent_id": agent_id, "expires_at": "tomorrow"}, "/expires_at"),
                         ({"user": "u", "agent_id": agent_id, "expires_at": "2030-01-01T00:00:00"}, "/expires_at"),
                         ({"user": "u", "agent_id": agent_id, "extra": 1}, "/extra")):
        status, problem, _ = await service.request("PUT", "/v1/entitlements", json=bad)
        assert status == 422 and problem["errors"][0]["pointer"] == pointer, (bad, problem)
    status, problem, _ = await service.request("PUT", "/v1/entitlements",
                                               json={"user": "u", "agent_id": str(uuid.uuid4())})
    assert status == 404
    status, problem, _ = await service.request("DELETE", f"/v1/entitlements/{uuid.uuid4()}")
    assert status == 404


async def test_a_service_runs_on_behalf_of_its_users_and_reads_their_executions(market: Api) -> None:
    service = await market.new_token("service")
    rival = await market.new_token("service")
    user = await market.new_token("user")
    agent_id = await service.register(["cat"])

    status, problem, _ = await service.post("/v1/executions?wait=30",
                                            json={"agent_id": agent_id, "input": {}, "on_behalf_of": user.subject})
    assert status == 403 and problem["type"] == PROBLEM + "entitlement_missing"
    await service.grant(user.subject, agent_id, uses=2)
    status, record, _ = await service.post(
        "/v1/executions?wait=30", json={"agent_id": agent_id, "input": {"for": "user"}, "on_behalf_of": user.subject})
    assert status == 201 and record["status"] == "COMPLETED", record
    assert record["owner"] == f"user:{user.subject}" and record["service"] == f"service:{service.subject}"
    assert record["submitted_by"] == f"service:{service.subject}"

    direct = await user.run(agent_id, {"by": "me"})  # the user's own run belongs to the granting service too
    assert direct["service"] == f"service:{service.subject}"
    for reader in (user, service):
        for execution in (record, direct):
            status, seen, _ = await reader.get(f"/v1/executions/{execution['id']}")
            assert status == 200 and seen["id"] == execution["id"]
    status, problem, _ = await rival.get(f"/v1/executions/{record['id']}")
    assert status == 404
    status, page, _ = await service.get(f"/v1/executions?user={user.subject}")
    assert {r["id"] for r in page["items"]} == {record["id"], direct["id"]}
    status, page, _ = await rival.get("/v1/executions")
    assert page["items"] == []

    status, problem, _ = await user.post("/v1/executions", json={"agent_id": agent_id, "input": {},
                                                                  "on_behalf_of": "someone"})
    assert status == 403 and problem["type"] == PROBLEM + "forbidden"
