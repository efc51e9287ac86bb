"""From what a runtime saw to the final state of an execution (pure logic)."""

from __future__ import annotations

import json
from typing import Any

from executor.executions.records import ErrorType, ExecutionError, Outcome, Status, Usage
from executor.schemas import violations
from runtimes.base import TaskResult, Termination

_BY_TERMINATION = {
    Termination.TIMEOUT: (Status.TIMEOUT, ErrorType.TIMEOUT),
    Termination.OOM: (Status.FAILED, ErrorType.MEMORY_LIMIT_EXCEEDED),
    Termination.OUTPUT_TOO_LARGE: (Status.FAILED, ErrorType.OUTPUT_TOO_LARGE),
    Termination.CANCELLED: (Status.CANCELLED, ErrorType.CANCELLED),
    Termination.PLATFORM_ERROR: (Status.FAILED, ErrorType.PLATFORM_ERROR),
    Termination.WASM_TRAP: (Status.FAILED, ErrorType.WASM_TRAP),
    Termination.FUEL_EXHAUSTED: (Status.FAILED, ErrorType.FUEL_EXHAUSTED),
}


def outcome_of(result: TaskResult, output_schema: Any) -> Outcome:
    """Map a task's end to its final state; the output is checked against the output schema."""
    common = dict(
        log=result.stderr,
        exit_code=result.exit_code,
        started_at=result.started_at,
        finished_at=result.finished_at,
        usage=Usage(wall_ms=result.wall_ms),
        pooled=result.pooled,
    )
    if result.termination in _BY_TERMINATION:
        status, error_type = _BY_TERMINATION[result.termination]
        detail = result.detail or error_type.value
        return Outcome(status, raw_output=result.stdout, error=ExecutionError(error_type, detail), **common)
    if result.exit_code != 0:
        detail = f"exited with code {result.exit_code}; see the log"
        return Outcome(Status.FAILED, raw_output=result.stdout, error=ExecutionError(ErrorType.NONZERO_EXIT, detail),
                       **common)
    try:
        output = json.loads(result.stdout)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        detail = f"stdout is not one JSON document: {exc}"
        return Outcome(Status.FAILED, raw_output=result.stdout, error=ExecutionError(ErrorType.OUTPUT_INVALID, detail),
                       **common)
    found = violations(output_schema, output)
    if found:
        error = ExecutionError(ErrorType.OUTPUT_INVALID, "output does not match the agent's output schema", found)
        return Outcome(Status.FAILED, raw_output=result.stdout, error=error, **common)
    return Outcome(Status.COMPLETED, output=output, **common)
