"""Every route's answer, end to end, against the schema the contract gives it (contract/components.py
and each area's module): one real request per operation, its status among the documented replies
and its body valid against that reply's schema; every problem against `Problem`. The last test
fails when an operation was added to the document without a request here."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import nacl.signing
import pytest
from jsonschema import Draft202012Validator

from executor.api.contract import openapi
from executor.api.contract.operation import Operation
from executor.receipts.jwk import to_jwk
from tests.conftest import Api

# Operations this file does not request, and why.
NOT_REQUESTED = {
    ("DELETE", "/v1/images/{ref}"): "204, no body (tests/api/test_images_api.py removes an image)",
    ("PUT", "/v1/agents/{id}/module"): "needs a compiled module (tests/api/test_wasm_agents.py)",
    ("PUT", "/v1/agents/{id}/versions/{version}/module"): "needs a compiled module (test_wasm_agents.py)",
    ("POST", "/v1/executions/{id}/webhooks/{delivery_id}/resend"):
        "needs a delivery that gave up (tests/api/test_webhook_resend.py); its 409 is checked here",
}
EXERCISED: set[tuple[str, str]] = set()


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    root = {"$ref": "#/$defs/checked", "$defs": {"checked": schema},
            "components": {"schemas": openapi.schemas()}}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid(name_or_schema: str | dict[str, Any], instance: Any) -> None:
    schema = {"$ref": f"#/components/schemas/{name_or_schema}"} if isinstance(name_or_schema, str) else name_or_schema
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
              for e in validator(schema).iter_errors(instance)]
    assert errors == [], f"{name_or_schema}: {errors}\n{json.dumps(instance)[:2000]}"


def operation(method: str, template: str) -> Operation:
    found = [op for op in openapi.operations() if (op.method, op.path) == (method, template)]
    assert found, f"{method} {template} is not in the contract"
    return found[0]


async def call(api: Api, method: str, template: str, path: str | None = None, **kwargs: Any) -> Any:
    """The request, its status one of the operation's replies, its body valid against that reply's schema
    (or a problem the operation lists, valid against Problem)."""
    op = operation(method, template)
    status, body, headers = await api.request(method, path or template, **kwargs)
    replies = {reply.status: reply for reply in op.replies}
    if status >= 400 and status not in replies:
        assert_valid("Problem", body)
        slug = body["type"].removeprefix("urn:executor:problem:")
        assert slug in openapi.problem_slugs(op), f"{method} {template} answered {slug}, which it does not list"
        assert openapi.problem_statuses()[slug] == status, body
        return body
    assert status in replies, f"{method} {path or template}: {status} is not a documented reply: {body!r}"[:2000]
    reply = replies[status]
    kind = headers.get("Content-Type", "")
    if reply.schema is None:
        assert body == b"", body
    elif reply.media == "application/json":
        assert kind.startswith("application/json"), kind
        assert_valid(reply.schema, body)
    else:
        assert kind.startswith(reply.media.split(";")[0]), kind
    EXERCISED.add((method, template))
    return body


async def final_event(api: Api, execution_id: str) -> dict[str, Any]:
    """The data of the stream's `final` event (the stream of a final execution is that one event)."""
    async with asyncio.timeout(30), api.session.get(
            f"{api.base_url}/v1/executions/{execution_id}/events",
            headers={"Authorization": f"Bearer {api.token}"}) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        text = (await response.read()).decode()
    EXERCISED.add(("GET", "/v1/executions/{id}/events"))
    events = [dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
              for block in text.split("\n\n") if block.strip()]
    assert events[-1]["event"] == "final", events
    data: dict[str, Any] = json.loads(events[-1]["data"])
    return data


async def test_agents_entitlements_executions_and_events(api: Api, images: dict[str, str]) -> None:
    schema = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
    body = {"name": f"shapes-{uuid.uuid4().hex[:8]}", "image": images["wordcount"], "input_schema": schema,
            "output_schema": {"type": "object"}, "limits": {"memory_mb": 64}, "pool": {"min": 0, "max": 0},
            "pricing": {"currency": "USD", "decimals": 2, "per_call": 3, "cap": 10}, "description": "counts"}
    agent = await call(api, "POST", "/v1/agents", json=body)
    agent_id = agent["id"]
    await call(api, "GET", "/v1/agents", "/v1/agents?limit=2")
    await call(api, "GET", "/v1/agents/{id}", f"/v1/agents/{agent_id}")
    await call(api, "POST", "/v1/agents/{id}/versions", f"/v1/agents/{agent_id}/versions",
               json={"image": images["busybox"], "command": ["cat"], "input_schema": True, "output_schema": True})
    versions = await call(api, "GET", "/v1/agents/{id}/versions", f"/v1/agents/{agent_id}/versions")
    assert_valid("AgentPage", versions)
    await call(api, "GET", "/v1/agents/{id}/versions/{version}", f"/v1/agents/{agent_id}/versions/1")
    await call(api, "POST", "/v1/agents/{id}/versions/{version}/deprecate",
               f"/v1/agents/{agent_id}/versions/2/deprecate")
    wasm = await call(api, "POST", "/v1/agents", json={
        "name": f"shapes-wasm-{uuid.uuid4().hex[:8]}", "kind": "wasm", "fuel": 10**9,
        "input_schema": {"type": "object"}, "output_schema": True})
    assert wasm["module_sha256"] is None and wasm["fuel"] == 10**9
    await call(api, "POST", "/v1/agents/{id}/versions/{version}/withdraw",
               f"/v1/agents/{wasm['id']}/versions/1/withdraw")

    user = await api.new_token("user")
    service = await api.new_token("service")
    await call(service, "PUT", "/v1/entitlements", json={"user": user.subject, "agent_id": agent_id, "uses": 5,
                                                          "expires_at": "2031-01-01T00:00:00Z"})
    await call(user, "GET", "/v1/entitlements")
    completed = await call(user, "POST", "/v1/executions", "/v1/executions?wait=30",
                           json={"agent_id": agent_id, "version": 1, "input": {"text": "one two three"}})
    assert completed["status"] == "COMPLETED" and completed["cost"] is not None, completed
    await call(user, "GET", "/v1/executions/{id}", f"/v1/executions/{completed['id']}")
    await call(user, "GET", "/v1/executions", "/v1/executions?limit=5")
    await call(user, "POST", "/v1/executions/{id}/cancel", f"/v1/executions/{completed['id']}/cancel")
    batch = await call(user, "POST", "/v1/executions/batch", "/v1/executions/batch?wait=30", json={"items": [
        {"agent_id": agent_id, "input": {"text": "a b"}}, {"agent_id": agent_id, "input": {"words": 2}}]})
    assert [item["status"] for item in batch["items"]] == [201, 422], batch
    for tail in ("logs", "input", "stdout", "egress"):
        await call(user, "GET", f"/v1/executions/{{id}}/{tail}", f"/v1/executions/{completed['id']}/{tail}")
    assert_valid("Execution", await final_event(user, completed["id"]))
    await call(service, "GET", "/v1/agents/{id}/stats", f"/v1/agents/{agent_id}/stats")
    # Secrets (write-only) and their reseal; an agent with egress is tests/api/test_egress.py's.
    secret = f"/v1/agents/{agent_id}/secrets"
    await call(api, "PUT", "/v1/agents/{id}/secrets/{name}", f"{secret}/key", json={"value": "v1"})
    await call(api, "PUT", "/v1/agents/{id}/secrets/{name}", f"{secret}/key", json={"value": "v2"})
    assert [s["version"] for s in (await call(api, "GET", "/v1/agents/{id}/secrets", secret))["items"]] == [2]
    await call(api, "POST", "/v1/secrets/reseal")
    await call(api, "DELETE", "/v1/agents/{id}/secrets/{name}", f"{secret}/key")
    await call(api, "DELETE", "/v1/agents/{id}/secrets/{name}", f"{secret}/key")  # 404 now
    listed = await call(service, "GET", "/v1/entitlements", f"/v1/entitlements?agent_id={agent_id}")
    await call(service, "DELETE", "/v1/entitlements/{id}", f"/v1/entitlements/{listed['items'][0]['id']}")

    # An output its schema refuses: an error with violations. A submission not yet final: 202.
    strict = await api.register(["cat"], output_schema={"type": "object", "required": ["missing"]})
    failed = await call(api, "POST", "/v1/executions", "/v1/executions?wait=30",
                        json={"agent_id": strict, "input": {"a": 1}})
    assert failed["error"]["type"] == "output_invalid" and failed["error"]["violations"], failed
    slow = await api.register(["sh", "-c", "sleep 30; cat"])
    pending = await call(api, "POST", "/v1/executions", json={"agent_id": slow, "input": {}})
    assert pending["status"] in ("PENDING", "RUNNING"), pending
    cancelled = await call(api, "POST", "/v1/executions/{id}/cancel", f"/v1/executions/{pending['id']}/cancel")
    assert cancelled["status"] in ("CANCELLED", "RUNNING"), cancelled

    # Problems, with and without `errors`.
    await call(api, "GET", "/v1/executions/{id}", f"/v1/executions/{uuid.uuid4()}")
    status, problem, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {}, "limits": 1})
    assert status == 422 and problem["errors"], problem
    assert_valid("Problem", problem)


async def test_tokens_and_the_contract_itself(api: Api) -> None:
    issued = await call(api, "POST", "/v1/tokens", json={"role": "user", "subject": f"u-{uuid.uuid4().hex[:6]}"})
    await call(api, "GET", "/v1/tokens", "/v1/tokens?limit=3")
    await call(api, "DELETE", "/v1/tokens/{id}", f"/v1/tokens/{issued['id']}")
    anonymous = api.as_token(None)
    await call(anonymous, "GET", "/v1/openapi.json")
    await call(anonymous, "GET", "/docs")
    for path in ("/console", "/console/console.js", "/console/verify.js", "/console/console.css"):
        await call(anonymous, "GET", path)


async def test_receipts_keys_and_the_log(api: Api, images: dict[str, str]) -> None:
    record = await api.run(await api.register(["cat"]), {"signed": True})
    bundle = await call(api, "GET", "/v1/executions/{id}/receipt", f"/v1/executions/{record['id']}/receipt")
    anonymous = api.as_token(None)
    await call(anonymous, "GET", "/v1/keys")
    head = await call(anonymous, "GET", "/v1/log/head")
    size = json.loads(base64.b64decode(head["payload"]))["tree_size"]
    await call(api, "GET", "/v1/executions/{id}/receipt",
               f"/v1/executions/{record['id']}/receipt?tree_size={bundle['inclusion_proof']['tree_size']}")
    await call(anonymous, "GET", "/v1/log/proof/inclusion", f"/v1/log/proof/inclusion?index=0&size={size}")
    await call(anonymous, "GET", "/v1/log/proof/consistency", f"/v1/log/proof/consistency?from=1&to={size}")

    envelope = bundle["envelope"]
    payload, kind = base64.b64decode(envelope["payload"]), envelope["payloadType"].encode()
    witness = nacl.signing.SigningKey.generate()
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)
    sig = base64.b64encode(witness.sign(pae).signature).decode()
    attested = await call(api, "POST", "/v1/executions/{id}/receipt/attestations",
                          f"/v1/executions/{record['id']}/receipt/attestations",
                          json={"keyid": "shapes-witness", "sig": sig, "public_key": to_jwk(witness.verify_key)})
    assert attested["witnesses"], attested
    report = await call(anonymous, "POST", "/v1/receipts/verify", json={
        "receipt": attested, "input_base64": base64.b64encode(json.dumps({"signed": True}).encode()).decode(),
        "head": head})
    assert report["receipt"] is not None and report["tree_head"] is not None, report
    broken = await call(anonymous, "POST", "/v1/receipts/verify", json={"receipt": "not a bundle"})
    assert broken["valid"] is False and broken["receipt"] is None, broken


async def test_webhooks(api: Api) -> None:
    service = await api.new_token("service")
    await call(service, "GET", "/v1/webhooks/endpoint")
    await call(service, "PUT", "/v1/webhooks/endpoint", json={"url": "https://example.invalid/hooks"})
    await call(service, "PUT", "/v1/webhooks/endpoint", json={"url": None})
    await call(service, "POST", "/v1/webhooks/endpoint/rotate")
    agent_id = await api.register(["cat"])
    record = await api.run(agent_id, {})
    assert (await call(api, "GET", "/v1/executions/{id}/webhooks", f"/v1/executions/{record['id']}/webhooks")
            ) == {"items": [], "next_cursor": None}
    # A delivery to a name that does not resolve: pending, then retried, each attempt listed.
    status, hooked, _ = await api.post("/v1/executions?wait=30", json={
        "agent_id": agent_id, "input": {}, "webhook_url": "https://example.invalid/hooks"})
    assert status == 201, hooked
    for _ in range(100):
        deliveries = await call(api, "GET", "/v1/executions/{id}/webhooks", f"/v1/executions/{hooked['id']}/webhooks")
        if deliveries["items"] and deliveries["items"][0]["attempts"]:
            break
        await asyncio.sleep(0.2)
    assert deliveries["items"], deliveries
    # Only a delivery that gave up may be sent again: this one is still being retried.
    delivery = deliveries["items"][0]
    problem = await call(api, "POST", "/v1/executions/{id}/webhooks/{delivery_id}/resend",
                         f"/v1/executions/{hooked['id']}/webhooks/{delivery['id']}/resend")
    assert problem["type"] == "urn:executor:problem:conflict", problem


async def test_images_status_metrics_and_health(api: Api, images: dict[str, str]) -> None:
    await call(api, "GET", "/v1/images")
    built = await call(api, "POST", "/v1/images/build", json={"names": ["busybox"]})
    assert built["items"][0]["cached"] is True
    current = await call(api, "GET", "/v1/status")
    # The shared job queue, read as the /metrics gauges read it (an idle queue: nothing waiting).
    assert set(current["queue"]) == {"depth", "oldest_age_s", "classes"}, current
    assert current["queue"]["depth"] >= 0
    assert (current["queue"]["oldest_age_s"] is None) == (current["queue"]["depth"] == 0), current
    classes = current["queue"]["classes"]
    assert list(classes) == ["high", "normal", "low"], current
    assert sum(c["depth"] for c in classes.values()) == current["queue"]["depth"], current
    metrics = await call(api, "GET", "/metrics")
    assert b"executor_worker_running_tasks" in metrics
    anonymous = api.as_token(None)
    await call(anonymous, "GET", "/healthz")
    ready = await call(anonymous, "GET", "/readyz")
    assert ready["status"] == "ready"


@pytest.mark.parametrize("body, valid", [
    ({"status": "unavailable", "checks": {"postgresql": "ok", "redis": "down", "docker": "ok"}}, True),
    ({"status": "ready", "checks": {"postgresql": "ok", "redis": "down", "docker": "ok"}}, False),
    ({"status": "unavailable", "checks": {"postgresql": "ok", "redis": "ok", "docker": "ok"}}, False),
])
def test_the_readiness_schema_ties_the_status_to_the_checks(body: dict[str, Any], valid: bool) -> None:
    """The 503 shape, which a healthy test service never answers."""
    assert validator({"$ref": "#/components/schemas/Readiness"}).is_valid(body) is valid


def test_every_operation_was_requested() -> None:
    """Runs last in this file: every documented operation had a real answer checked above."""
    if not EXERCISED:
        pytest.skip("the end-to-end tests of this file did not run")
    documented = {(op.method, op.path) for op in openapi.operations()}
    missing = documented - EXERCISED - set(NOT_REQUESTED)
    assert missing == set(), f"operations with no request in this file: {sorted(missing)}"
