"""Webhooks end to end: Standard Webhooks signatures, retries from the outbox, a restart in
between, per-execution targets, and what a failed delivery does not change."""

from __future__ import annotations

import json
from typing import Any

import standardwebhooks

from executor_client import verify_webhook
from tests.api.conftest import Receiver, wait_for
from tests.conftest import Api, ServiceProcess

PROBLEM = "urn:executor:problem:"


async def _deliveries(api: Api, execution_id: str) -> list[dict[str, Any]]:
    status, page, _ = await api.get(f"/v1/executions/{execution_id}/webhooks")
    assert status == 200, page
    return page["items"]


async def _setup(market: Api, url: str) -> tuple[Api, Api, str, str]:
    service = await market.new_token("service")
    user = await market.new_token("user")
    status, endpoint, headers = await service.request("PUT", "/v1/webhooks/endpoint", json={"url": url})
    assert status == 200 and endpoint["url"] == url and endpoint["secret"].startswith("whsec_"), endpoint
    assert headers["Cache-Control"] == "no-store"
    agent_id = await service.register(["cat"])
    await service.grant(user.subject, agent_id)
    return service, user, agent_id, endpoint["secret"]


async def test_a_receiver_down_then_up_gets_one_successful_delivery_across_a_restart(
        market: Api, market_service: ServiceProcess) -> None:
    receiver = Receiver()  # not listening yet: every attempt fails to connect
    service, user, agent_id, secret = await _setup(market, receiver.url)
    record = await user.run(agent_id, {"hello": "hooks"})
    assert record["status"] == "COMPLETED"

    async def failed_twice() -> list[dict[str, Any]] | None:
        (delivery,) = await _deliveries(service, record["id"])
        return [delivery] if delivery["attempt_count"] >= 2 else None

    (delivery,) = await wait_for(failed_twice)
    assert delivery["status"] == "pending" and all(a["status_code"] is None and a["error"]
                                                   for a in delivery["attempts"])
    market_service.stop()  # the pending delivery lives in PostgreSQL, not in the process
    await receiver.start()
    try:
        market_service.start()
        (received,) = await receiver.wait_for(1)

        async def delivered() -> list[dict[str, Any]] | None:
            (found,) = await _deliveries(service, record["id"])
            return [found] if found["status"] == "delivered" else None

        (delivery,) = await wait_for(delivered)
    finally:
        await receiver.stop()
    successes = [a for a in delivery["attempts"] if a["status_code"] == 204]
    assert len(successes) == 1 and delivery["attempt_count"] == len(delivery["attempts"]) >= 3
    assert len(receiver.received) == 1

    # Signed per Standard Webhooks: the outside implementation and our client agree.
    payload = standardwebhooks.Webhook(secret).verify(received.body, received.headers)
    assert verify_webhook(secret, received.headers, received.body) == payload
    assert received.headers["webhook-id"] == delivery["id"]
    assert payload["type"] == "execution.completed"
    assert payload["data"]["execution"]["id"] == record["id"]
    assert payload["data"]["execution"]["output"] == {"hello": "hooks"}
    assert payload["data"]["receipt"]["envelope"]["payloadType"] == "application/vnd.executor.receipt+json"
    status, final, _ = await user.get(f"/v1/executions/{record['id']}")
    assert status == 200, final
    assert final["status"] == "COMPLETED" and final["finished_at"] == record["finished_at"]


async def test_a_failing_receiver_never_changes_the_execution(market: Api, receiver: Receiver) -> None:
    receiver.status = 500
    _service, user, agent_id, _secret = await _setup(market, receiver.url)
    record = await user.run(agent_id, {"n": 1})
    await receiver.wait_for(2)
    (delivery,) = await _deliveries(user, record["id"])  # the owner sees its deliveries too
    assert {a["status_code"] for a in delivery["attempts"]} == {500}
    status, final, _ = await user.get(f"/v1/executions/{record['id']}")
    assert final == record  # the failed deliveries changed nothing in the execution
    status, receipt, _ = await user.get(f"/v1/executions/{record['id']}/receipt")
    assert status == 200, receipt
    receiver.status = 200
    await wait_for(lambda: _delivered(user, record["id"]))


async def _delivered(api: Api, execution_id: str) -> bool:
    return (await _deliveries(api, execution_id))[0]["status"] == "delivered"


async def test_a_webhook_url_per_execution_is_signed_with_the_submitters_secret(
        market: Api, receiver: Receiver) -> None:
    service, user, agent_id, secret = await _setup(market, "http://127.0.0.1:9/unused")
    status, record, _ = await service.post("/v1/executions?wait=30", json={
        "agent_id": agent_id, "input": {"to": "here"}, "on_behalf_of": user.subject, "webhook_url": receiver.url})
    assert status == 201 and record["webhook_url"] == receiver.url
    (received,) = await receiver.wait_for(1)
    payload = verify_webhook(secret, received.headers, received.body)
    assert payload["data"]["execution"]["id"] == record["id"]
    deliveries = await _deliveries(service, record["id"])
    assert [d["url"] for d in deliveries] == [receiver.url]  # only there, not to the endpoint too

    # Rotating the secret: later deliveries are signed with the new one.
    status, rotated, _ = await service.post("/v1/webhooks/endpoint/rotate")
    assert rotated["secret"] != secret
    status, second, _ = await service.post("/v1/executions?wait=30", json={
        "agent_id": agent_id, "input": {}, "webhook_url": receiver.url})
    received = (await receiver.wait_for(2))[1]
    assert verify_webhook(rotated["secret"], received.headers, received.body)["data"]["execution"]["id"] == second["id"]


async def test_webhook_targets_are_validated(market: Api) -> None:
    service = await market.new_token("service")
    user = await market.new_token("user")
    agent_id = await service.register(["cat"])
    await service.grant(user.subject, agent_id)
    for bad in ("ftp://example.com/hook", "http://user:secret@example.com/hook", "http:///nohost", "not a url",
                "https://example.com/hook#fragment"):
        status, problem, _ = await service.post("/v1/executions", json={"agent_id": agent_id, "input": {},
                                                                         "webhook_url": bad})
        assert status == 422 and problem["errors"][0]["pointer"] == "/webhook_url", (bad, problem)
        status, problem, _ = await service.request("PUT", "/v1/webhooks/endpoint", json={"url": bad})
        assert status == 422 and problem["errors"][0]["pointer"] == "/url", (bad, problem)
    status, problem, _ = await user.post("/v1/executions", json={"agent_id": agent_id, "input": {},
                                                                  "webhook_url": "https://example.com/hook"})
    assert status == 403 and problem["type"] == PROBLEM + "forbidden"
    status, problem, _ = await user.get("/v1/webhooks/endpoint")
    assert status == 403
    assert "secret" not in json.dumps(await _deliveries(service, (await service.run(agent_id))["id"]))
