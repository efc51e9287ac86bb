"""What an agent prints can never stall, crash or misreport the service (issue families 1-3).

Output that parses as JSON in Python yet cannot be stored (NaN, a number past a double, U+0000,
a lone surrogate, an integer too long to read) or is nested past the service's depth ends at once
as FAILED `output_invalid`: the agent's fault, so charged and receipted. A finish the storage
refuses for any other reason ends the execution as `platform_error` on its first start; it never
goes back to the queue to run the task again.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.conftest import Api, serving

HUGE_INT = "printf '{\"x\": '; head -c 5000 /dev/zero | tr '\\000' 9; printf '}'"
DEEP_ARRAYS = "head -c 100000 /dev/zero | tr '\\000' '['; head -c 100000 /dev/zero | tr '\\000' ']'"
SOMEWHAT_DEEP = "head -c 300 /dev/zero | tr '\\000' '['; head -c 300 /dev/zero | tr '\\000' ']'"
PRICING = {"currency": "EUR", "decimals": 2, "per_call": 5}

UNSTORABLE = {
    "nan": "printf '%s' '{\"x\": NaN}'",
    "infinity": "printf '%s' '{\"x\": -Infinity}'",
    "overflowing_double": "printf '%s' '{\"x\": 1e400}'",
    "nul_in_string": "printf '%s' '{\"x\": \"a\\u0000b\"}'",
    "nul_in_key": "printf '%s' '{\"a\\u0000\": 1}'",
    "lone_surrogate": "printf '%s' '{\"x\": \"\\ud800\"}'",
    "lone_low_surrogate_in_array": "printf '%s' '[1, \"\\udfff\"]'",
    "integer_too_long_to_read": HUGE_INT,
    "very_deep_nesting": DEEP_ARRAYS,
    "deeper_than_the_cap": SOMEWHAT_DEEP,
}


async def _register(service: Api, script: str, output_schema: Any = True) -> str:
    status, agent, _ = await service.post("/v1/agents", json={
        "name": f"hostile-{uuid.uuid4().hex[:10]}", "image": "executor/busybox:latest",
        "command": ["sh", "-c", script], "input_schema": {"type": "object"},
        "output_schema": output_schema, "pricing": PRICING})
    assert status == 201, agent
    return agent["id"]


@pytest.mark.parametrize("family", sorted(UNSTORABLE))
async def test_unstorable_output_is_output_invalid_charged_and_receipted(api: Api, family: str) -> None:
    service = await api.new_token("service")
    user = await api.new_token("user")
    # An output schema that descends (items/properties → the root): validation would recurse.
    schema = {"anyOf": [{"type": "array", "items": {"$ref": "#"}},
                        {"type": "object", "additionalProperties": {"$ref": "#"}}, {"type": ["number", "string"]}]}
    agent_id = await _register(service, UNSTORABLE[family], output_schema=schema)
    grant = await service.grant(user.subject, agent_id, uses=3)

    record = await user.run(agent_id, wait=25)
    assert record["status"] == "FAILED", record
    assert record["error"]["type"] == "output_invalid", record
    assert record["error"]["detail"], record
    assert record["attempts"] == 1, record
    assert record["cost"] == {"currency": "EUR", "decimals": 2, "amount": 5, "capped": False}, record

    status, entitlements, _ = await service.get(f"/v1/entitlements?user={user.subject}&agent_id={agent_id}")
    (after,) = [e for e in entitlements["items"] if e["id"] == grant["id"]]
    assert after["uses_consumed"] == 1 and after["uses_remaining"] == 2, after
    status, bundle, _ = await user.get(f"/v1/executions/{record['id']}/receipt")
    assert status == 200, bundle
    # The raw bytes the agent printed are kept (the receipt hashes them).
    stdout = await user.get_bytes(f"/v1/executions/{record['id']}/stdout")
    assert stdout, "the raw stdout was not kept"


async def test_a_finish_the_storage_refuses_ends_the_execution_on_its_first_start(postgres, redis_server,
                                                                                   images) -> None:
    # The armed fault makes every finish with a task's own outcome fail as a refusing database
    # would (not a connection error: retrying cannot help). Before the fix, the job went back to
    # the queue after the visibility timeout and the task ran a second time.
    async with serving(postgres, redis_server, "refused_finish", redis_db="11", job_visibility_s="2",
                       max_attempts="3", fault_points="finish_refused") as (_svc, api):
        agent_id = await api.register(["sh", "-c", "echo '{\"ok\": true}'"])
        record = await api.run(agent_id, wait=20)
        assert record["status"] == "FAILED" and record["error"]["type"] == "platform_error", record
        assert "could not be recorded" in record["error"]["detail"], record
        assert record["attempts"] == 1, record
        assert record["cost"] is None or record["cost"]["amount"] == 0, record
        status, bundle, _ = await api.get(f"/v1/executions/{record['id']}/receipt")
        assert status == 200, bundle
        # Still final and still started once after several visibility timeouts.
        await asyncio.sleep(5)
        status, again, _ = await api.get(f"/v1/executions/{record['id']}")
        assert again["status"] == "FAILED" and again["attempts"] == 1, again
