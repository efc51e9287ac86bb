"""Execution records, states and error types: the shapes that cross layers."""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from executor.pricing import Cost
from executor.records.principals import Principal, Role
from executor.settings import Limits


class Status(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self not in (Status.PENDING, Status.RUNNING)


FINAL_STATUSES = tuple(s.value for s in Status if s.is_final)


class ErrorType(str, enum.Enum):
    """Why a final execution is not COMPLETED (`error.type`); stable API."""

    INPUT_INVALID = "input_invalid"
    OUTPUT_INVALID = "output_invalid"
    OUTPUT_TOO_LARGE = "output_too_large"
    MEMORY_LIMIT_EXCEEDED = "memory_limit_exceeded"
    TIMEOUT = "timeout"
    NONZERO_EXIT = "nonzero_exit"
    WASM_TRAP = "wasm_trap"
    FUEL_EXHAUSTED = "fuel_exhausted"
    # Past a cap of its egress (docs/egress.md): the agent's doing, charged like a timeout.
    EGRESS_REQUESTS_EXCEEDED = "egress_requests_exceeded"
    EGRESS_BYTES_EXCEEDED = "egress_bytes_exceeded"
    EGRESS_TIME_EXCEEDED = "egress_time_exceeded"
    CANCELLED = "cancelled"
    PLATFORM_ERROR = "platform_error"


@dataclass(frozen=True)
class ExecutionError:
    type: ErrorType
    detail: str
    violations: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type.value, "detail": self.detail}
        if self.violations is not None:
            body["violations"] = self.violations
        return body


@dataclass(frozen=True)
class Usage:
    """What a task used, from its claim (a cold container: its creation) to its exit; None: not measured."""

    wall_ms: int | None = None
    cpu_ms: int | None = None
    peak_memory_bytes: int | None = None
    input_bytes: int | None = None
    output_bytes: int | None = None
    fuel_consumed: int | None = None  # WASM agents: known when the fuel ran out (see docs/receipts.md)

    def to_dict(self) -> dict[str, int | None]:
        return {"wall_ms": self.wall_ms, "cpu_ms": self.cpu_ms, "peak_memory_bytes": self.peak_memory_bytes,
                "input_bytes": self.input_bytes, "output_bytes": self.output_bytes,
                "fuel_consumed": self.fuel_consumed}


@dataclass(frozen=True)
class ExecutionRecord:
    id: uuid.UUID
    agent_id: uuid.UUID
    agent_version: int
    owner: str
    status: Status
    input: Any
    limits: Limits
    created_at: datetime
    output: Any = None
    error: ExecutionError | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    usage: Usage = field(default_factory=Usage)
    worker: str | None = None
    cancel_requested: bool = False
    pooled: bool | None = None
    oci_runtime: str | None = None
    cost: Cost | None = None
    service: str | None = None  # the marketplace service it belongs to ("service:<subject>")
    submitted_by: str | None = None  # who sent it, when not its owner (a service acting for a user)
    entitlement_id: uuid.UUID | None = None  # the entitlement one use was taken from
    webhook_url: str | None = None
    attempts: int = 0  # how many times it was started (a worker died mid-run: started again)
    priority: str = "normal"  # its class in the job queue (queue/classes.py)
    # When its bodies (input, output, stdin, stdout, log) were deleted past EXECUTOR_RETENTION_S.
    bodies_deleted_at: datetime | None = None
    # Its agent's egress (docs/egress.md): the digest of what it sent, as its receipt binds it
    # ({"sha256", "requests", "bytes_out", "bytes_in"}); None: no egress declared.
    egress: dict[str, Any] | None = None

    def visible_to(self, principal: Principal) -> bool:
        """An operator sees every execution, a service its own and its users', anyone else their own."""
        return principal.role is Role.OPERATOR or principal.party in (self.owner, self.service)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "agent_id": str(self.agent_id),
            "agent_version": self.agent_version,
            "status": self.status.value,
            "input": self.input,
            "output": self.output,
            "error": self.error.to_dict() if self.error else None,
            "exit_code": self.exit_code,
            "limits": self.limits.to_dict(),
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "usage": self.usage.to_dict(),
            "cost": self.cost.to_dict() if self.cost else None,
            "pooled": self.pooled,
            "oci_runtime": self.oci_runtime,
            "owner": self.owner,
            "service": self.service,
            "submitted_by": self.submitted_by,
            "entitlement_id": str(self.entitlement_id) if self.entitlement_id else None,
            "webhook_url": self.webhook_url,
            "worker": self.worker,
            "attempts": self.attempts,
            "priority": self.priority,
            "bodies_deleted_at": _iso(self.bodies_deleted_at),
            "egress": self.egress,
        }


@dataclass(frozen=True)
class Outcome:
    """What a finished task amounts to, ready to be written as the final state."""

    status: Status
    output: Any = None
    raw_output: bytes | None = None  # stdout as read (up to the cap); None when the task never ran
    log: bytes = b""
    error: ExecutionError | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    usage: Usage = field(default_factory=Usage)
    pooled: bool | None = None
    oci_runtime: str | None = None
    # What the task sent through the egress gateway, in order (each entry a JSON object); None:
    # its agent declared no egress.
    egress: list[dict[str, Any]] | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def encode_input(value: Any) -> bytes:
    """The exact bytes a task reads on stdin."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def parse_execution_id(text: str) -> uuid.UUID | None:
    """An execution id from a URL; None for anything that is not a UUID (no such execution)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
