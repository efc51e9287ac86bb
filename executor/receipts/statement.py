"""What a receipt says: the statement signed for every final execution (version 1).

Every value is a string, an integer within ±(2^53−1), a boolean or null, so that its
RFC 8785 form is the same in any language: money is integer minor units, times are
RFC 3339 strings in UTC with microseconds, digests are lower-case hex SHA-256.

Every field of FIELDS is always present. The OPTIONAL_FIELDS appear only when they apply:
`egress` (executor/receipts/egress.py) when the execution's agent declared egress, so that
the receipts of every other execution are exactly what they were before it existed.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from executor.receipts.egress import EGRESS_FIELDS
from executor.records.agents import AgentVersion
from executor.records.executions import ExecutionRecord

RECEIPT_VERSION = 1

# name → the JSON types its value may have ("null" where it may be null); what a verifier checks.
FIELDS: dict[str, tuple[str, ...]] = {
    "receipt_version": ("int",),
    "log_id": ("str",),
    "log_index": ("int",),
    "key_id": ("str",),
    "issued_at": ("time",),
    "execution_id": ("str",),
    "owner": ("str",),
    "agent_id": ("str",),
    "agent_version": ("int",),
    "agent_kind": ("str",),
    "image_digest": ("str", "null"),
    "module_sha256": ("str", "null"),
    "oci_runtime": ("str", "null"),
    "input_sha256": ("str",),
    "input_bytes": ("int",),
    "output_sha256": ("str", "null"),
    "output_bytes": ("int", "null"),
    "status": ("str",),
    "error_type": ("str", "null"),
    "exit_code": ("int", "null"),
    "created_at": ("time",),
    "started_at": ("time", "null"),
    "finished_at": ("time", "null"),
    "usage": ("object",),
    "cost": ("object", "null"),
}
# Present only when they apply (their absence says: not applicable).
OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "egress": ("object",),
}
USAGE_FIELDS = ("wall_ms", "cpu_ms", "peak_memory_bytes", "fuel_consumed")


def rfc3339(value: datetime) -> str:
    """UTC, microseconds, `Z`: one spelling for one instant."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def receipt_statement(record: ExecutionRecord, agent: AgentVersion, *, stdin: bytes, stdout: bytes | None,
                      log_id: str, log_index: int, key_id: str, issued_at: datetime) -> dict[str, Any]:
    """The statement of a final execution. `stdin` and `stdout` are the exact bytes the task
    read and wrote (stdout up to its cap; None when the task never ran). `egress` is there when
    the record has its agent's egress digest."""
    usage = record.usage
    statement: dict[str, Any] = {
        "receipt_version": RECEIPT_VERSION,
        "log_id": log_id,
        "log_index": log_index,
        "key_id": key_id,
        "issued_at": rfc3339(issued_at),
        "execution_id": str(record.id),
        "owner": record.owner,
        "agent_id": str(record.agent_id),
        "agent_version": record.agent_version,
        "agent_kind": agent.kind,
        "image_digest": agent.image_digest,
        "module_sha256": agent.module_sha256,
        "oci_runtime": record.oci_runtime,
        "input_sha256": sha256_hex(stdin),
        "input_bytes": len(stdin),
        "output_sha256": sha256_hex(stdout) if stdout is not None else None,
        "output_bytes": len(stdout) if stdout is not None else None,
        "status": record.status.value,
        "error_type": record.error.type.value if record.error else None,
        "exit_code": record.exit_code,
        "created_at": rfc3339(record.created_at),
        "started_at": rfc3339(record.started_at) if record.started_at else None,
        "finished_at": rfc3339(record.finished_at) if record.finished_at else None,
        "usage": {"wall_ms": usage.wall_ms, "cpu_ms": usage.cpu_ms, "peak_memory_bytes": usage.peak_memory_bytes,
                  "fuel_consumed": usage.fuel_consumed},
        "cost": record.cost.to_dict() if record.cost else None,
    }
    if record.egress is not None:
        statement["egress"] = {name: record.egress[name] for name in EGRESS_FIELDS}
    return statement


def statement_problems(statement: Any) -> list[str]:
    """What is wrong with a receipt statement's shape (empty when it is well formed)."""
    if not isinstance(statement, dict):
        return ["the payload is not a JSON object"]
    problems = [f"missing field {name}" for name in FIELDS if name not in statement]
    problems += [f"unknown field {name}" for name in statement if name not in FIELDS and name not in OPTIONAL_FIELDS]
    for name, kinds in (FIELDS | OPTIONAL_FIELDS).items():
        if name in statement and not any(_is(kind, statement[name]) for kind in kinds):
            problems.append(f"{name} must be {' or '.join(kinds)}")
    if statement.get("receipt_version") not in (None, RECEIPT_VERSION):
        problems.append(f"unsupported receipt_version {statement['receipt_version']}")
    usage = statement.get("usage")
    if isinstance(usage, dict):
        for name in USAGE_FIELDS:
            if not (usage.get(name) is None or _is("int", usage.get(name))):
                problems.append(f"usage.{name} must be int or null")
    egress = statement.get("egress")
    if isinstance(egress, dict):
        problems += _egress_problems(egress)
    return problems


def _egress_problems(egress: dict[str, Any]) -> list[str]:
    if set(egress) != set(EGRESS_FIELDS):
        return [f"egress must have exactly {', '.join(EGRESS_FIELDS)}"]
    problems = []
    if not (isinstance(egress["sha256"], str) and len(egress["sha256"]) == 64
            and all(c in "0123456789abcdef" for c in egress["sha256"])):
        problems.append("egress.sha256 must be a lower-case hex SHA-256")
    for name in EGRESS_FIELDS[1:]:
        if not (_is("int", egress[name]) and egress[name] >= 0):
            problems.append(f"egress.{name} must be a non-negative int")
    return problems


def _is(kind: str, value: Any) -> bool:
    if kind == "null":
        return value is None
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "time":
        try:
            parse_rfc3339(value)
        except (TypeError, ValueError):
            return False
        return True
    raise AssertionError(kind)
