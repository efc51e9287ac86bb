"""Building a task from an agent version, for both kinds, and reading its end (pure logic)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from executor.executions import tasks
from executor.records.agents import AgentVersion
from executor.records.executions import ExecutionRecord, Status
from executor.settings import Limits, Settings
from runtimes.base import TaskLimits, TaskResult, Termination
from runtimes.pool import MAX_IDLE_AGE_S

LIMITS = Limits(memory_mb=64, cpus=0.5, pids=16, timeout_s=3.0)
NOW = datetime(2026, 12, 6, tzinfo=UTC)


def agent(kind: str, **fields: object) -> AgentVersion:
    base = AgentVersion(
        agent_id=uuid.uuid4(), name="a", kind=kind, version=2, image="img", image_digest="sha256:" + "ab" * 32,
        command=["cat"] if kind == "container" else None, input_schema={}, output_schema={}, limits=LIMITS,
        pool=None, description=None, owner="service:s", created_at=NOW,
    )
    return replace(base, **fields)


def record(version: AgentVersion) -> ExecutionRecord:
    return ExecutionRecord(id=uuid.uuid4(), agent_id=version.agent_id, agent_version=version.version, owner="user:u",
                           status=Status.RUNNING, input={"text": "é"}, limits=LIMITS, created_at=NOW)


def exited(code: int, stderr: bytes = b"") -> TaskResult:
    return TaskResult(Termination.EXITED, code, b"{}", stderr, NOW, NOW, 5)


def test_a_container_task_runs_the_agents_own_command_under_the_records_limits() -> None:
    settings = Settings(max_output_bytes=1000, max_log_bytes=500, tmpfs_mb=8, oci_runtime="runsc")
    version = agent("container")
    execution = record(version)
    spec = tasks.build_task(version, execution, None, settings)
    assert spec.command == ["cat"] and spec.image == version.image_digest
    assert spec.limits == TaskLimits(memory_mb=64, cpus=0.5, pids=16, timeout_s=3.0)
    assert spec.stdin == '{"text":"é"}'.encode()  # the stored input, encoded as submitted
    assert (spec.max_output_bytes, spec.max_log_bytes, spec.tmpfs_mb) == (1000, 500, 8)
    assert spec.oci_runtime == "runsc"  # the operator's default when the version names none
    assert (spec.pool_min, spec.pool_max) == (settings.pool_default_min, settings.pool_default_max)
    assert spec.pool_owner == f"{version.agent_id}:2" and spec.execution_id == str(execution.id)
    assert tasks.fuel_budget(version, settings) is None


def test_the_stored_stdin_wins_and_the_version_chooses_its_runtime_and_pool() -> None:
    version = agent("container", runtime="runc", pool={"min": 0, "max": 3})
    spec = tasks.build_task(version, record(version), b'{"exact":"bytes"}', Settings(oci_runtime="runsc"))
    assert spec.stdin == b'{"exact":"bytes"}'
    assert spec.oci_runtime == "runc" and (spec.pool_min, spec.pool_max) == (0, 3)


@pytest.mark.parametrize(("fuel", "expected"), [(None, 10**10), (12345, 12345)])
def test_a_wasm_task_runs_wasmtime_with_its_fuel_memory_cap_and_a_backstop_timeout(fuel: int | None,
                                                                                  expected: int) -> None:
    settings = Settings(wasm_default_fuel=10**10)
    version = agent("wasm", fuel=fuel)
    spec = tasks.build_task(version, record(version), None, settings)
    assert spec.command is not None
    line = " ".join(spec.command)
    assert f"fuel={expected}" in line
    assert f"max-memory-size={64 * 2**20 * 3 // 4}" in line
    # wasmtime's clock starts with the pre-started container, before the claim: only a backstop.
    assert f"timeout={int((3.0 + MAX_IDLE_AGE_S + 5) * 1000)}ms" in line
    assert tasks.fuel_budget(version, settings) == expected


def test_a_wasm_end_is_read_from_wasmtimes_exit_and_a_containers_is_left_as_it_is() -> None:
    trap = exited(134, b"guest line\nError: failed to run main module\nwasm trap: all fuel consumed by WebAssembly\n")
    assert tasks.interpret(agent("wasm"), trap).termination is Termination.FUEL_EXHAUSTED
    assert tasks.interpret(agent("container"), trap) == trap
    assert tasks.interpret(agent("wasm"), exited(0)) == exited(0)
