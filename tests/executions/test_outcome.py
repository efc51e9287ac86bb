"""Unit tests of mapping a task's end to a final state (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from executor.executions.outcome import outcome_of
from executor.records.executions import ErrorType, Status, Usage
from runtimes.base import TaskResult, TaskUsage, Termination

NOW = datetime.now(UTC)
SCHEMA = {"type": "object", "required": ["n"]}


def result(termination=Termination.EXITED, exit_code=0, stdout=b'{"n": 1}', **fields) -> TaskResult:
    return TaskResult(termination, exit_code, stdout, b"log", NOW, NOW, 5, **fields)


def test_completed_keeps_the_exact_stdout_and_the_usage() -> None:
    measured = TaskUsage(cpu_ns=1_234_567_890, peak_memory_bytes=4096, method="cgroup")
    outcome = outcome_of(result(usage=measured, oci_runtime="runc"), SCHEMA)
    assert outcome.status is Status.COMPLETED and outcome.output == {"n": 1} and outcome.raw_output == b'{"n": 1}'
    assert outcome.log == b"log" and outcome.oci_runtime == "runc"
    assert outcome.usage == Usage(wall_ms=5, cpu_ms=1234, peak_memory_bytes=4096, output_bytes=8)


def test_fuel_consumed_is_the_budget_only_when_it_ran_out() -> None:
    assert outcome_of(result(Termination.FUEL_EXHAUSTED, 134), SCHEMA, fuel_budget=99).usage.fuel_consumed == 99
    assert outcome_of(result(), SCHEMA, fuel_budget=99).usage.fuel_consumed is None


def test_a_task_that_never_ran_has_no_output_bytes() -> None:
    never = TaskResult(Termination.PLATFORM_ERROR, None, b"", b"", None, None, None, "could not create")
    outcome = outcome_of(never, SCHEMA)
    assert outcome.raw_output is None and outcome.usage.output_bytes is None
    assert outcome.error.type is ErrorType.PLATFORM_ERROR


@pytest.mark.parametrize("termination, status, error", [
    (Termination.TIMEOUT, Status.TIMEOUT, ErrorType.TIMEOUT),
    (Termination.OOM, Status.FAILED, ErrorType.MEMORY_LIMIT_EXCEEDED),
    (Termination.OUTPUT_TOO_LARGE, Status.FAILED, ErrorType.OUTPUT_TOO_LARGE),
    (Termination.CANCELLED, Status.CANCELLED, ErrorType.CANCELLED),
    (Termination.PLATFORM_ERROR, Status.FAILED, ErrorType.PLATFORM_ERROR),
])
def test_terminations(termination, status, error) -> None:
    outcome = outcome_of(result(termination, exit_code=137), SCHEMA)
    assert outcome.status is status and outcome.error.type is error and outcome.output is None


def test_nonzero_exit() -> None:
    outcome = outcome_of(result(exit_code=2), SCHEMA)
    assert outcome.error.type is ErrorType.NONZERO_EXIT and outcome.exit_code == 2


@pytest.mark.parametrize("stdout", [b"", b"not json", b'{"n": 1} {"n": 2}', b"\xff\xfe"])
def test_not_one_json_document(stdout: bytes) -> None:
    outcome = outcome_of(result(stdout=stdout), SCHEMA)
    assert outcome.error.type is ErrorType.OUTPUT_INVALID and outcome.raw_output == stdout


def test_schema_violation_lists_pointers() -> None:
    outcome = outcome_of(result(stdout=b'{"m": 1}'), SCHEMA)
    assert outcome.error.type is ErrorType.OUTPUT_INVALID
    assert outcome.error.violations == [{"pointer": "", "detail": "'n' is a required property"}]


@pytest.mark.parametrize("stdout", [b'{"n": NaN}', b'{"n": 1e400}', b'{"n": "\\u0000"}', b'{"n": "\\ud800"}',
                                    b'{"n": ' + b"1" * 5000 + b"}", b"[" * 100_000 + b"]" * 100_000,
                                    b"[" * 65 + b"]" * 65])
def test_output_that_could_not_be_stored_is_output_invalid(stdout: bytes) -> None:
    outcome = outcome_of(result(stdout=stdout), {"items": {"$ref": "#"}})
    assert outcome.status is Status.FAILED and outcome.error.type is ErrorType.OUTPUT_INVALID, outcome.error
    assert outcome.raw_output == stdout and outcome.output is None


def test_nested_output_within_the_depth_is_checked_against_a_recursive_schema() -> None:
    outcome = outcome_of(result(stdout=b"[" * 64 + b"]" * 64), {"type": "array", "items": {"$ref": "#"}})
    assert outcome.status is Status.COMPLETED, outcome.error
