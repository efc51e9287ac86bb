"""POST /v1/executions/{id}/webhooks/{delivery_id}/resend: a failed delivery queued again, its
attempts kept; who may ask; and what is not failed is not resent."""

from __future__ import annotations

import uuid
from typing import Any

from tests.api.conftest import Receiver, wait_for
from tests.conftest import Api, serving

PROBLEM = "urn:executor:problem:"
# One attempt per delivery: a 500 makes it failed at once. Webhooks to localhost, looked for often.
SETTINGS = {"redis_db": "11", "pool_enabled": "false", "webhook_max_attempts": "1", "webhook_allow_private": "true",
            "webhook_retry_base_s": "0.3", "webhook_poll_s": "0.2", "webhook_timeout_s": "5"}


async def _delivery(api: Api, execution_id: str) -> dict[str, Any]:
    status, page, _ = await api.get(f"/v1/executions/{execution_id}/webhooks")
    assert status == 200, page
    (delivery,) = page["items"]
    return delivery


async def _settled(api: Api, execution_id: str, attempts: int) -> dict[str, Any]:
    """The delivery once it has made `attempts` attempts and is no longer pending."""
    async def settled() -> dict[str, Any] | None:
        delivery = await _delivery(api, execution_id)
        return delivery if delivery["attempt_count"] >= attempts and delivery["status"] != "pending" else None

    found: dict[str, Any] = await wait_for(settled)
    return found


async def test_a_failed_delivery_is_sent_again_keeping_its_attempts(postgres: Any, redis_server: Any,
                                                                    images: Any) -> None:
    receiver = Receiver(status=500)
    await receiver.start()
    try:
        async with serving(postgres, redis_server, "resend", **SETTINGS) as (_svc, operator):
            service = await operator.new_token("service")
            user = await operator.new_token("user")
            status, endpoint, _ = await service.request("PUT", "/v1/webhooks/endpoint", json={"url": receiver.url})
            assert status == 200, endpoint
            agent_id = await service.register(["cat"])
            await service.grant(user.subject, agent_id)
            record = await user.run(agent_id, {"n": 1})
            assert record["status"] == "COMPLETED", record

            failed = await _settled(service, record["id"], 1)
            assert failed["status"] == "failed" and [a["status_code"] for a in failed["attempts"]] == [500]
            resend = f"/v1/executions/{record['id']}/webhooks/{failed['id']}/resend"

            # A user may not resend; a service only what it may see and was made to its own endpoint.
            status, problem, _ = await user.post(resend)
            assert status == 403 and problem["type"] == PROBLEM + "forbidden", problem
            other = await operator.new_token("service")
            status, problem, _ = await other.post(resend)
            assert status == 404 and problem["type"] == PROBLEM + "not_found", problem
            for unknown in (str(uuid.uuid4()), "not-a-uuid"):
                status, problem, _ = await operator.post(f"/v1/executions/{record['id']}/webhooks/{unknown}/resend")
                assert status == 404 and problem["type"] == PROBLEM + "not_found", problem
            status, problem, _ = await operator.post(f"/v1/executions/{uuid.uuid4()}/webhooks/{failed['id']}/resend")
            assert status == 404, problem

            # The operator resends: pending again, due now, its attempt kept; the receiver still fails.
            status, again, _ = await operator.post(resend)
            assert status == 200, again
            assert again["id"] == failed["id"] and again["status"] == "pending" and again["next_attempt_at"]
            assert again["attempts"] == failed["attempts"] and again["attempt_count"] == 1
            failed_again = await _settled(service, record["id"], 2)
            assert failed_again["status"] == "failed"
            assert [a["attempt"] for a in failed_again["attempts"]] == [1, 2]

            # The service that owns the endpoint resends once the receiver is up: delivered, same webhook-id.
            receiver.status = 204
            status, again, _ = await service.post(resend)
            assert status == 200 and again["status"] == "pending", again
            delivered = await _settled(service, record["id"], 3)
            assert delivered["status"] == "delivered" and delivered["delivered_at"]
            assert [a["status_code"] for a in delivered["attempts"]] == [500, 500, 204]
            ids = {received.headers["webhook-id"] for received in receiver.received}
            assert ids == {failed["id"]} and len(receiver.received) == 3

            # Only a failed delivery is resent.
            status, problem, _ = await operator.post(resend)
            assert status == 409 and problem["type"] == PROBLEM + "conflict", problem
            assert "delivered" in problem["detail"]
    finally:
        await receiver.stop()
