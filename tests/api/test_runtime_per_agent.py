"""Isolation chosen per agent: one service allowing runc and runsc serves agents of both.

The operator allows a set of OCI runtimes (EXECUTOR_OCI_RUNTIMES) and a default
(EXECUTOR_OCI_RUNTIME); an agent version may ask for one (`"runtime"`), fixed
with the version. Its executions' records, receipts and the agent's stats name
the runtime that ran them. A runtime the operator did not allow, or one the
engine lacks, is refused at registration.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from executor.errors import ConfigurationError
from executor.settings import load_settings
from tests.api.test_execution_lifecycle import HARDENING_PROBE, assert_hardened
from tests.api.test_receipts import statement_of
from tests.api.test_request_errors import assert_problem
from tests.api.test_runsc import GVISOR, HOSTILE_CASES
from tests.api.test_wasm_agents import assert_wasm_endings, register_wasm, upload
from tests.conftest import Api, ServiceProcess, make_service
from tests.images.test_wasm_runtime import ECHO_WAT

# "absent" is allowed by the operator but not registered with the engine.
ALLOWED = "runc,runsc,absent"


@pytest.fixture(scope="module")
def mixed_service(postgres, redis_server, images, docker_client) -> Iterator[ServiceProcess]:
    assert "runsc" in docker_client.info().get("Runtimes", {}), "runsc is not registered with the engine"
    svc = make_service(postgres, redis_server, "mixed", redis_db="15", oci_runtimes=ALLOWED, oci_runtime="runc")
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
async def mixed(mixed_service: ServiceProcess) -> Any:
    async with aiohttp.ClientSession() as session:
        yield Api(session, mixed_service.base_url, mixed_service.operator_token)


async def register(api: Api, command: list[str] | None, *, runtime: str | None = None, limits: Any = None,
                   image: str = "executor/busybox:latest") -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"rt-{uuid.uuid4().hex[:12]}", "image": image, "command": command,
                            "input_schema": {"type": "object"}, "output_schema": True}
    if runtime is not None:
        body["runtime"] = runtime
    if limits is not None:
        body["limits"] = limits
    status, agent, _ = await api.post("/v1/agents", json=body)
    assert status == 201, agent
    return agent


async def assert_ran_under(api: Api, record: dict[str, Any], runtime: str) -> None:
    """The record and its signed receipt both name the runtime."""
    assert record["oci_runtime"] == runtime, record
    status, bundle, _ = await api.get(f"/v1/executions/{record['id']}/receipt")
    assert status == 200, bundle
    assert statement_of(bundle)["oci_runtime"] == runtime


async def test_container_agents_of_both_runtimes_are_hardened(mixed: Api) -> None:
    """Same image, command and limits: only the runtime tells the agents' pre-started containers
    apart, and the probe itself shows which kernel it met (gVisor's Sentry reports Seccomp 0)."""
    for runtime in ("runc", "runsc", None):
        agent = await register(mixed, ["sh", "-c", HARDENING_PROBE], runtime=runtime, limits=GVISOR)
        assert agent["runtime"] == runtime
        ran = runtime or "runc"  # no runtime asked: the operator's default
        for _ in range(2):  # the second run may be served by a pre-started container
            record = await mixed.run(agent["id"], wait=40)
            assert record["status"] == "COMPLETED", record
            await assert_ran_under(mixed, record, ran)
            assert_hardened(record["output"], gvisor=ran == "runsc")
            assert record["output"]["seccomp"] == (0 if ran == "runsc" else 2), (record["pooled"], record["output"])

        status, stats, _ = await mixed.get(f"/v1/agents/{agent['id']}/stats")
        assert status == 200, stats
        assert stats["versions"][0]["runtime"] == runtime, stats
        assert stats["versions"][0]["ran_under"] == {ran: 2}, stats


async def test_hostile_agents_under_both_runtimes(mixed: Api) -> None:
    for runtime in ("runc", "runsc"):
        for command, limits, expected in HOSTILE_CASES:
            agent = await register(mixed, command, runtime=runtime, limits=limits)
            record = await mixed.run(agent["id"], wait=40)
            assert (record["status"], (record["error"] or {}).get("type")) in expected, (runtime, command, record)
            assert record["oci_runtime"] == runtime, record
            status, _, _ = await mixed.get("/healthz")
            assert status == 200


async def test_wasm_agents_under_both_runtimes(mixed: Api) -> None:
    """The same module, compiled once for the CPU baseline, runs under runc and under gVisor,
    and every way a module ends maps to the same error type under both."""
    for runtime, limits in (("runc", None), ("runsc", GVISOR)):
        agent_id = await register_wasm(mixed, runtime=runtime, **({"limits": limits} if limits else {}))
        status, agent = await upload(mixed, agent_id, ECHO_WAT)
        assert status == 200, agent
        assert agent["runtime"] == runtime
        record = await mixed.run(agent_id, {"under": runtime}, wait=40)
        assert record["status"] == "COMPLETED" and record["output"] == {"under": runtime}, record
        await assert_ran_under(mixed, record, runtime)
        for ended in await assert_wasm_endings(mixed, limits=limits, runtime=runtime):
            assert ended["oci_runtime"] == runtime, ended


async def test_a_runtime_not_allowed_or_not_on_the_engine_is_refused(mixed: Api) -> None:
    base = {"image": "executor/busybox:latest", "command": ["cat"], "input_schema": True, "output_schema": True}
    for runtime in ("kata", "absent", 5, "", "runc ", ["runc"]):
        body = {"name": f"rt-{uuid.uuid4().hex[:12]}", **base, "runtime": runtime}
        status, problem, headers = await mixed.post("/v1/agents", json=body)
        # The contract refuses what is not a runtime's name at all (not a string, empty); the
        # service refuses a name the operator does not allow or the engine does not have.
        assert_problem(status, problem, headers, 422, "runtime_unavailable" if isinstance(runtime, str) and runtime
                       else "request_invalid")
        assert problem["errors"][0]["pointer"] == "/runtime", problem
    body = {"name": f"rt-{uuid.uuid4().hex[:12]}", "kind": "wasm", "input_schema": True, "output_schema": True,
            "runtime": "absent"}
    status, problem, headers = await mixed.post("/v1/agents", json=body)
    assert_problem(status, problem, headers, 422, "runtime_unavailable")


async def test_a_gvisor_task_with_too_few_pids_to_start_is_refused_not_charged(mixed: Api) -> None:
    """Under runsc a pids limit below gVisor's own threads never starts (measured: 36 fails, 40
    starts): refused at registration and at submission, rather than run and charged as the agent's
    nonzero_exit. The same limit under runc is the agent's own choice."""
    base = {"image": "executor/busybox:latest", "command": ["cat"], "input_schema": True, "output_schema": True}
    body = {"name": f"rt-{uuid.uuid4().hex[:12]}", **base, "runtime": "runsc", "limits": {"pids": 32}}
    status, problem, headers = await mixed.post("/v1/agents", json=body)
    assert_problem(status, problem, headers, 422, "request_invalid")
    assert problem["errors"][0]["pointer"] == "/limits/pids", problem
    agent = await register(mixed, ["cat"], runtime="runsc", limits=GVISOR)
    status, problem, headers = await mixed.post("/v1/executions", json={"agent_id": agent["id"], "input": {},
                                                                        "limits": {"pids": 8}})
    assert_problem(status, problem, headers, 422, "request_invalid")
    status, batch, _ = await mixed.post("/v1/executions/batch", json={"items": [
        {"agent_id": agent["id"], "input": {}, "limits": {"pids": 8}}]})
    assert status == 200 and batch["items"][0]["status"] == 422, batch
    low = await register(mixed, ["cat"], runtime="runc", limits={"pids": 32})
    assert (await mixed.run(low["id"], wait=40))["status"] == "COMPLETED"


async def test_a_new_version_may_change_the_runtime_and_the_old_one_keeps_its_own(mixed: Api) -> None:
    agent = await register(mixed, ["sh", "-c", "cat"], runtime="runc", limits=GVISOR)
    status, v2, _ = await mixed.post(f"/v1/agents/{agent['id']}/versions",
                                     json={"image": "executor/busybox:latest", "command": ["sh", "-c", "cat"],
                                           "input_schema": True, "output_schema": True, "limits": GVISOR,
                                           "runtime": "runsc"})
    assert status == 201 and v2["runtime"] == "runsc", v2
    status, problem, headers = await mixed.post(f"/v1/agents/{agent['id']}/versions",
                                                json={"image": "executor/busybox:latest", "input_schema": True,
                                                      "output_schema": True, "runtime": "kata"})
    assert_problem(status, problem, headers, 422, "runtime_unavailable")
    for version, runtime in ((1, "runc"), (2, "runsc")):
        status, record, _ = await mixed.post("/v1/executions?wait=40", json={
            "agent_id": agent["id"], "version": version, "input": {"v": version}})
        assert record["status"] == "COMPLETED" and record["output"] == {"v": version}, record
        await assert_ran_under(mixed, record, runtime)


def test_the_allowed_runtimes_are_settings() -> None:
    settings = load_settings({"EXECUTOR_OCI_RUNTIMES": "runc, runsc", "EXECUTOR_OCI_RUNTIME": "runsc"})
    assert settings.allowed_oci_runtimes == ("runc", "runsc") and settings.oci_runtime == "runsc"
    # The old variable alone keeps its meaning: every task under it, and agents may ask for it.
    assert load_settings({"EXECUTOR_OCI_RUNTIME": "runsc"}).allowed_oci_runtimes == ("runsc",)
    assert load_settings({}).allowed_oci_runtimes == ()
    for bad in ({"EXECUTOR_OCI_RUNTIMES": "runc", "EXECUTOR_OCI_RUNTIME": "runsc"},
                {"EXECUTOR_OCI_RUNTIMES": "runc,bad name"}):
        with pytest.raises(ConfigurationError):
            load_settings(bad)
