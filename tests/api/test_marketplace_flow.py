"""The whole marketplace flow through `executor.client`: the service registers an agent and
grants it, the user runs it, the service's webhook receiver gets the signed result and
verifies it, the receipt verifies, and the agent's stats move."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from executor.client import ApiError, ExecutorClient, verify_webhook
from tests.api.conftest import Receiver
from tests.conftest import ServiceProcess


async def test_the_marketplace_flow_through_the_client(market_service: ServiceProcess, receiver: Receiver) -> None:
    async with ExecutorClient(market_service.base_url, market_service.operator_token) as operator:
        shop = f"shop-{uuid.uuid4().hex[:6]}"
        service = operator.with_token((await operator.create_token("service", shop))["token"])
        alice = f"alice-{uuid.uuid4().hex[:6]}"
        user = operator.with_token((await operator.create_token("user", alice))["token"])

        agent = await service.register_agent(
            name=f"summarise-{uuid.uuid4().hex[:8]}", image="executor/busybox:latest", command=["cat"],
            input_schema={"type": "object", "required": ["text"]}, output_schema={"type": "object"},
            pricing={"currency": "EUR", "decimals": 2, "per_call": 10})
        endpoint = await service.set_webhook_endpoint(receiver.url)
        grant = await service.grant(alice, agent["id"], uses=2,
                                    expires_at=datetime.now(UTC) + timedelta(days=30))
        assert grant["state"] == "live" and grant["uses_remaining"] == 2

        try:
            await user.submit(agent["id"], {"no": "text"})
            raise AssertionError("an input violating the schema was accepted")
        except ApiError as error:
            assert error.status == 422 and error.slug == "input_invalid"
        record = await user.run(agent["id"], {"text": "hello marketplace"})
        assert record["status"] == "COMPLETED" and record["output"] == {"text": "hello marketplace"}
        assert record["cost"]["amount"] == 10 and record["service"] == f"service:{shop}"

        (received,) = await receiver.wait_for(1)
        payload = verify_webhook(endpoint["secret"], received.headers, received.body)
        assert payload["type"] == "execution.completed"
        assert payload["data"]["execution"]["id"] == record["id"]
        assert payload["data"]["execution"]["cost"] == record["cost"]

        bundle = await service.receipt(record["id"])
        report = await service.verify_receipt(bundle, input_bytes=b'{"text":"hello marketplace"}')
        assert report.valid, report.to_dict()
        assert report.statement["execution_id"] == record["id"] and report.statement["cost"]["amount"] == 10
        assert bundle["envelope"] == payload["data"]["receipt"]["envelope"]  # the webhook carried the same receipt

        stats = await service.agent_stats(agent["id"])
        (version,) = stats["versions"]
        assert version["executions"] == 1 and version["success_rate"] == 1.0
        (entitlement,) = await service.entitlements(user=alice, agent_id=agent["id"])
        assert entitlement["uses_remaining"] == 1
        deliveries = await service.webhook_deliveries(record["id"])
        assert [d["status"] for d in deliveries] == ["delivered"]
