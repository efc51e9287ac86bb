"""From what a runtime saw to the final state of an execution (pure logic)."""

from __future__ import annotations

from typing import Any

from executor import jsondoc
from executor.records.executions import (
    ErrorType,
    ExecutionError,
    Outcome,
    Status,
    Usage,
)
from executor.schemas import DEFAULT_BUDGET_MS, violations
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

# The cap of its egress a task passed (the gateway's name for it) → its error type.
_EGRESS_LIMITS = {error.value: error for error in (
    ErrorType.EGRESS_REQUESTS_EXCEEDED, ErrorType.EGRESS_BYTES_EXCEEDED, ErrorType.EGRESS_TIME_EXCEEDED)}


def usage_of(result: TaskResult, *, fuel_budget: int | None = None) -> Usage:
    """The metered figures of a task. wasmtime reports no fuel count, so the fuel consumed is
    known only when it ran out: then it is the whole budget."""
    measured = result.usage
    ran = result.started_at is not None  # else the platform failed before the task's container ran
    return Usage(
        wall_ms=result.wall_ms,
        cpu_ms=measured.cpu_ns // 1_000_000 if measured.cpu_ns is not None else None,
        peak_memory_bytes=measured.peak_memory_bytes,
        output_bytes=len(result.stdout) if ran else None,
        fuel_consumed=fuel_budget if result.termination is Termination.FUEL_EXHAUSTED else None,
    )


def outcome_of(result: TaskResult, output_schema: Any, *, fuel_budget: int | None = None,
               schema_budget_ms: float = DEFAULT_BUDGET_MS) -> Outcome:
    """Map a task's end to its final state; the output is checked against the output schema
    within `schema_budget_ms`. The raw stdout is always kept (up to its cap): the receipt hashes
    those exact bytes. CPU-bound on the task's output: the worker runs it off the event loop."""
    usage = usage_of(result, fuel_budget=fuel_budget)

    def ended(status: Status, *, error: ExecutionError | None = None, output: Any = None) -> Outcome:
        return Outcome(
            status,
            output=output,
            error=error,
            raw_output=result.stdout if usage.output_bytes is not None else None,  # None: it never ran
            log=result.stderr,
            exit_code=result.exit_code,
            started_at=result.started_at,
            finished_at=result.finished_at,
            usage=usage,
            pooled=result.pooled,
            oci_runtime=result.oci_runtime,
            egress=[dict(entry) for entry in result.egress] if result.egress is not None else None,
        )

    if result.termination is Termination.EGRESS_LIMIT:
        error_type = _EGRESS_LIMITS.get(result.egress_limit or "", ErrorType.EGRESS_REQUESTS_EXCEEDED)
        return ended(Status.FAILED, error=ExecutionError(error_type, result.detail or error_type.value))
    if result.termination in _BY_TERMINATION:
        status, error_type = _BY_TERMINATION[result.termination]
        detail = result.detail or error_type.value
        return ended(status, error=ExecutionError(error_type, detail))
    if result.exit_code != 0:
        detail = f"exited with code {result.exit_code}; see the log"
        return ended(Status.FAILED, error=ExecutionError(ErrorType.NONZERO_EXIT, detail))
    try:
        # Only what every later step can hold: the storage, the schema check, the receipt.
        output = jsondoc.loads(result.stdout)
    except jsondoc.DocumentRefused as exc:
        detail = f"stdout is not one JSON document that can be stored: {exc}"
        return ended(Status.FAILED, error=ExecutionError(ErrorType.OUTPUT_INVALID, detail))
    found = violations(output_schema, output, budget_ms=schema_budget_ms)
    if found:
        error = ExecutionError(ErrorType.OUTPUT_INVALID, "output does not match the agent's output schema", found)
        return ended(Status.FAILED, error=error)
    return ended(Status.COMPLETED, output=output)
