"""WASM agents end to end through HTTP: register, upload, run, and every way a module ends."""

from __future__ import annotations

import hashlib
import uuid

import wasmtime

from tests.api.test_request_errors import assert_problem
from tests.images.test_wasm_runtime import ECHO_WAT, SPIN_WAT

UNREACHABLE_WAT = '(module (memory (export "memory") 1) (func (export "_start") unreachable))'
GROW_WAT = """(module (memory (export "memory") 1)
  (func (export "_start") (loop $l (drop (memory.grow (i32.const 16))) (br $l))))"""
BAD_IMPORT_WAT = """(module (import "env" "launch_missiles" (func))
  (memory (export "memory") 1) (func (export "_start")))"""


async def register_wasm(api, **fields) -> str:
    body = {"name": f"wasm-{uuid.uuid4().hex[:10]}", "kind": "wasm", "input_schema": {"type": "object"},
            "output_schema": True, **fields}
    status, agent, _ = await api.post("/v1/agents", json=body)
    assert status == 201, agent
    assert agent["kind"] == "wasm" and agent["image_digest"] is None and agent["module_sha256"] is None
    return agent["id"]


async def upload(api, agent_id: str, wat: str) -> tuple[int, dict]:
    status, body, _ = await api.request("PUT", f"/v1/agents/{agent_id}/module", data=wasmtime.wat2wasm(wat),
                                        headers={"Content-Type": "application/wasm"})
    return status, body


async def test_register_upload_and_run_a_wasm_agent(api, images) -> None:
    agent_id = await register_wasm(api)
    status, problem, headers = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
    assert_problem(status, problem, headers, 409, "conflict")  # no module yet

    module = wasmtime.wat2wasm(ECHO_WAT)
    status, agent = await upload(api, agent_id, ECHO_WAT)
    assert status == 200, agent
    assert agent["module_sha256"] == hashlib.sha256(module).hexdigest()
    assert agent["image_digest"].startswith("sha256:")

    record = await api.run(agent_id, {"msg": "hello", "n": [1, 2, 3]})
    assert record["status"] == "COMPLETED", record
    assert record["output"] == {"msg": "hello", "n": [1, 2, 3]} and record["pooled"] is False

    status, problem = await upload(api, agent_id, ECHO_WAT)
    assert status == 409 and problem["type"].endswith(":conflict")  # a version's module is set once


async def test_rejected_modules_name_what_is_wrong_and_store_nothing(api) -> None:
    agent_id = await register_wasm(api)
    status, problem = await upload(api, agent_id, BAD_IMPORT_WAT)
    assert status == 422 and problem["type"].endswith(":module_invalid")
    assert problem["errors"][0]["pointer"] == "env.launch_missiles"
    status, problem, _ = await api.request("PUT", f"/v1/agents/{agent_id}/module", data=b"(module)")
    assert status == 422 and problem["errors"][0]["pointer"] == "magic"
    status, agent, _ = await api.get(f"/v1/agents/{agent_id}")
    assert agent["module_sha256"] is None and agent["image_digest"] is None
    container = await api.register(["cat"])
    status, problem = await upload(api, container, ECHO_WAT)
    assert status == 409


async def test_fuel_timeout_trap_and_memory_map_to_their_error_types(api, images) -> None:
    cases = [
        (SPIN_WAT, {"fuel": 10**6}, None, ("FAILED", "fuel_exhausted")),
        (SPIN_WAT, {"fuel": 10**12}, {"timeout_s": 1}, ("TIMEOUT", "timeout")),
        (UNREACHABLE_WAT, {}, None, ("FAILED", "wasm_trap")),
        (GROW_WAT, {}, {"memory_mb": 64}, ("FAILED", "memory_limit_exceeded")),
    ]
    details = {}
    for wat, fields, limits, (status_name, error_type) in cases:
        agent_id = await register_wasm(api, **fields, **({"limits": limits} if limits else {}))
        status, agent = await upload(api, agent_id, wat)
        assert status == 200, agent
        record = await api.run(agent_id, {})
        assert (record["status"], record["error"]["type"]) == (status_name, error_type), record
        details[error_type] = record["error"]["detail"]
    assert "unreachable" in details["wasm_trap"]  # wasmtime's own trap line


async def test_a_wasm_registration_is_checked(api) -> None:
    base = {"name": f"wasm-{uuid.uuid4().hex[:10]}", "kind": "wasm", "input_schema": True, "output_schema": True}
    for extra, slug in (({"image": "executor/busybox:latest"}, "request_invalid"),
                        ({"fuel": 0}, "request_invalid"),
                        ({"fuel": 10**15}, "limit_exceeded"),
                        ({"pool": {"min": 1, "max": 2}}, "request_invalid")):
        status, problem, headers = await api.post("/v1/agents", json={**base, **extra})
        assert_problem(status, problem, headers, 422, slug)
