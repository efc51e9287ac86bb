"""WASM agents end to end through HTTP: register, upload, run, and every way a module ends."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import wasmtime

from runtimes.base import INSTANCE_LABEL, POOL_LABEL
from tests.api.test_pool import wait_for_pre_started
from tests.api.test_request_errors import assert_problem
from tests.conftest import private_tmpdir, serving
from tests.images.test_wasm_runtime import ECHO_WAT, SPIN_WAT

UNREACHABLE_WAT = '(module (memory (export "memory") 1) (func (export "_start") unreachable))'
GROW_WAT = """(module (memory (export "memory") 1)
  (func (export "_start") (loop $l (drop (memory.grow (i32.const 16))) (br $l))))"""
EXIT_3_WAT = """(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1) (func (export "_start") (call $exit (i32.const 3))))"""
NO_START_WAT = '(module (memory (export "memory") 1) (func (export "main")))'
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
    for data in (b"(module)", b"\x89PNG\r\n\x1a\n not wasm at all"):
        status, problem, _ = await api.request("PUT", f"/v1/agents/{agent_id}/module", data=data)
        assert status == 422 and problem["errors"][0]["pointer"] == "magic", problem
    status, problem = await upload(api, agent_id, NO_START_WAT)
    assert status == 422 and problem["errors"][0]["pointer"] == "_start"
    status, agent, _ = await api.get(f"/v1/agents/{agent_id}")
    assert agent["module_sha256"] is None and agent["image_digest"] is None
    container = await api.register(["cat"])
    status, problem = await upload(api, container, ECHO_WAT)
    assert status == 409


# (module, registration fields, limits, the (status, error type) it must end with)
WASM_ENDINGS = [
    (SPIN_WAT, {"fuel": 10**6}, None, ("FAILED", "fuel_exhausted")),
    (SPIN_WAT, {"fuel": 10**12}, {"timeout_s": 1}, ("TIMEOUT", "timeout")),
    (UNREACHABLE_WAT, {}, None, ("FAILED", "wasm_trap")),
    (GROW_WAT, {}, {"memory_mb": 64}, ("FAILED", "memory_limit_exceeded")),
    (EXIT_3_WAT, {}, None, ("FAILED", "nonzero_exit")),
]


async def assert_wasm_endings(api, *, limits: dict | None = None, **fields) -> list[dict]:
    """Every way a module ends maps to its error type; `limits` and `fields` are added to each
    registration (e.g. a higher pids limit and `"runtime": "runsc"` for gVisor). The records."""
    records = []
    for wat, own_fields, own_limits, (status_name, error_type) in WASM_ENDINGS:
        merged = {**(limits or {}), **(own_limits or {})}
        agent_id = await register_wasm(api, **own_fields, **fields, **({"limits": merged} if merged else {}))
        status, agent = await upload(api, agent_id, wat)
        assert status == 200, agent
        record = await api.run(agent_id, {}, wait=40)
        assert (record["status"], (record["error"] or {}).get("type")) == (status_name, error_type), record
        records.append(record)
    trapped = next(r for r in records if r["error"]["type"] == "wasm_trap")
    assert "unreachable" in trapped["error"]["detail"]  # wasmtime's own trap line
    log = (await api.get(f"/v1/executions/{trapped['id']}/logs"))[1]
    assert b"wasm trap: wasm `unreachable` instruction executed" in log
    return records


async def test_fuel_timeout_trap_and_memory_map_to_their_error_types(api, images) -> None:
    await assert_wasm_endings(api)


async def test_a_wasm_registration_is_checked(api) -> None:
    base = {"name": f"wasm-{uuid.uuid4().hex[:10]}", "kind": "wasm", "input_schema": True, "output_schema": True}
    for extra, slug in (({"image": "executor/busybox:latest"}, "request_invalid"),
                        ({"fuel": 0}, "request_invalid"),
                        ({"fuel": 10**15}, "limit_exceeded")):
        status, problem, headers = await api.post("/v1/agents", json={**base, **extra})
        assert_problem(status, problem, headers, 422, slug)


async def test_pre_started_wasm_containers_serve_wasm_agents(api, service, docker_client) -> None:
    """The pool serves WASM agents too; the task's wall clock still starts at the claim."""
    agent_id = await register_wasm(api, limits={"timeout_s": 1})
    # A module of its own, so that no other agent's pre-started containers share its image.
    unique = ECHO_WAT.replace('(func (export "_start")', f"(global $nonce i32 (i32.const {uuid.uuid4().int % 2**31}))\n"
                              '  (func (export "_start")')
    status, agent = await upload(api, agent_id, unique)
    assert status == 200, agent
    assert (await api.run(agent_id, {"first": 1}))["pooled"] is False

    def pooled() -> list:
        # sparse: no inspect per container, which races with the removals going on meanwhile
        found = docker_client.containers.list(sparse=True, filters={
            "label": [POOL_LABEL, f"{INSTANCE_LABEL}={service.instance_id}"]})
        return [c for c in found if c.attrs["ImageID"] == agent["image_digest"]]

    await wait_for_pre_started(api, service, pooled, f"the WASM agent's image {agent['image_digest'][:19]}")
    await asyncio.sleep(1.5)  # longer than the task's timeout: it must not count
    record = await api.run(agent_id, {"second": 2})
    assert record["status"] == "COMPLETED" and record["pooled"] is True, record
    assert record["output"] == {"second": 2}


async def test_a_deployment_that_cannot_build_the_wasm_runtime_answers_503(postgres, redis_server) -> None:
    """An images folder without images/wasm is the operator's fault, not the uploader's: a clear
    503 problem, and the version keeps no module."""
    async with serving(postgres, redis_server, "no_wasm_runtime", redis_db="13", pool_enabled="false",
                       images_dir=str(private_tmpdir("executor-no-wasm-images-"))) as (_, api):
        agent_id = await register_wasm(api)
        status, problem = await upload(api, agent_id, ECHO_WAT)
        assert status == 503 and problem["type"] == "urn:executor:problem:wasm_runtime_unavailable", problem
        status, agent, _ = await api.get(f"/v1/agents/{agent_id}")
        assert status == 200 and agent["module_sha256"] is None, agent
