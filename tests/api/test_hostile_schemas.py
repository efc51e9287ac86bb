"""Issue 15, family 5: a tenant's schema cannot freeze the service (through HTTP, real service).

Schemas that cannot terminate are refused at registration with the pointer of the reference
that closes the cycle; patterns run on a linear-time engine, off the event loop, under a
budget, so /healthz keeps answering while catastrophic-backtracking inputs and outputs are
checked. Speed is measured in bench/hostile_schemas.py, never asserted here."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp

from tests.conftest import Api

CATASTROPHIC = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
HOSTILE = "a" * 40 + "!"  # backtracking engines take ~2^40 steps on this
PATIENCE_S = 20.0  # for one /healthz answer: generous, so only a stalled loop misses it
BASE = {"image": "executor/busybox:latest", "command": ["cat"], "input_schema": {"type": "object"},
        "output_schema": True}


async def test_schemas_that_cannot_terminate_are_refused_naming_the_pointer(api: Api) -> None:
    for field in ("input_schema", "output_schema"):
        for schema, pointer in (
            ({"$ref": "#"}, "/$ref"),
            ({"anyOf": [{"$ref": "#/$defs/a"}], "$defs": {"a": {"$ref": "#"}}}, "/$defs/a/$ref"),
            ({"$defs": {"a": {"if": {"$ref": "#/$defs/b"}}, "b": {"not": {"$ref": "#/$defs/a"}}},
              "properties": {"x": {"$ref": "#/$defs/a"}}}, "/$defs/b/not/$ref"),
            ({"$dynamicAnchor": "n", "dependentSchemas": {"k": {"$dynamicRef": "#n"}}},
             "/dependentSchemas/k/$dynamicRef"),
            ({"properties": {"s": {"pattern": "(a)\\1"}}}, "/properties/s/pattern"),  # needs backtracking
        ):
            body = {**BASE, "name": f"hostile-{uuid.uuid4().hex[:8]}", field: schema}
            status, problem, headers = await api.post("/v1/agents", json=body)
            assert status == 422 and headers["Content-Type"].startswith("application/problem+json"), (status, problem)
            assert problem["type"] == "urn:executor:problem:schema_invalid", problem
            assert problem["errors"][0]["pointer"] == f"/{field}{pointer}", (schema, problem)


async def _ended(api: Api, status: int, body: Any) -> dict[str, Any] | int:
    """What became of one submission: its 4xx status, or its final record."""
    if 400 <= status < 500:
        return status
    assert status in (201, 202), (status, body)
    for _ in range(60):
        got, record, _ = await api.get(f"/v1/executions/{body['id']}?wait=5")
        assert got == 200, record
        if record["status"] not in ("PENDING", "RUNNING"):
            return record
    raise AssertionError(f"execution {body['id']} is still {record['status']} after 5 min")


async def test_catastrophic_patterns_in_inputs_and_outputs_do_not_stall_the_service(api: Api) -> None:
    checks_input = await api.register(["cat"], input_schema=CATASTROPHIC)  # RE2 runs it: accepted
    checks_output = await api.register(["cat"], input_schema={"type": "object"}, output_schema=CATASTROPHIC)

    async def submit(agent_id: str, text: str) -> tuple[int, Any]:
        status, body, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {"s": text}})
        return status, body

    submissions = [asyncio.create_task(submit(agent, HOSTILE)) for agent in [checks_input, checks_output] * 4]
    healthz = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PATIENCE_S)) as plain:
        while not all(task.done() for task in submissions) or len(healthz) < 10:
            try:
                async with plain.get(api.base_url + "/healthz") as response:
                    healthz.append(response.status)
            except TimeoutError:
                raise AssertionError(f"/healthz did not answer within {PATIENCE_S} s while hostile inputs "
                                     f"were checked ({len(healthz)} answers before)") from None
            await asyncio.sleep(0.05)
    assert set(healthz) == {200}, healthz

    for index, task in enumerate(submissions):
        status, body = task.result()
        ended = await _ended(api, status, body)
        if index % 2 == 0:  # the input is checked at submission: refused with the pointer of the string
            assert ended == 422 and body["type"] == "urn:executor:problem:input_invalid", body
            assert [e["pointer"] for e in body["errors"]] == ["/s"], body
        else:  # the output is checked by the worker: the agent's fault
            assert isinstance(ended, dict) and ended["status"] == "FAILED", ended
            assert ended["error"]["type"] == "output_invalid", ended

    # The pattern still means what it says for the inputs and outputs that match it.
    for agent_id in (checks_input, checks_output):
        record = await api.run(agent_id, {"s": "a" * 40})
        assert record["status"] == "COMPLETED" and record["output"] == {"s": "a" * 40}, record
