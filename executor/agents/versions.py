"""The rules of an agent's versions: who may change them, how their status moves, what their
stats say. Agents (service.py) applies them.

A published version never changes (schemas, image digest or module hash, limits, pricing);
what moves is its status, one way: published → deprecated → withdrawn. A deprecated
version still runs when asked for by number; a withdrawn one never runs again. Executions
pin the version they ran, so their records and receipts stay true after either.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import asyncpg

from executor.errors import Forbidden
from executor.records.agents import AgentVersion
from executor.records.principals import Principal, Role

# The status a version may move to, from the statuses it may move from.
MOVES = {"deprecated": ("published",), "withdrawn": ("published", "deprecated")}


def check_may_manage(caller: Principal, agent: AgentVersion) -> None:
    """Operators manage every agent; a service manages the agents it registered."""
    if caller.role is not Role.OPERATOR and agent.owner != caller.party:
        raise Forbidden(f"agent {agent.agent_id} belongs to {agent.owner}; only it or an operator may change it")


def version_stats(row: asyncpg.Record) -> dict[str, Any]:
    """One version's line of GET /v1/agents/{id}/stats, from its row of storage.agents.version_stats."""
    final = row["completed"] + row["failed"] + row["timeout"] + row["cancelled"]
    return {
        "version": row["version"],
        "status": row["status"],
        "runtime": row["runtime"],  # asked for; None: the operator's default
        "ran_under": {runtime: count for runtime, count in row["ran_under"]},  # OCI runtime: executions
        "executions": row["executions"],
        "live": row["live"],
        "final": final,
        "by_status": {"COMPLETED": row["completed"], "FAILED": row["failed"], "TIMEOUT": row["timeout"],
                      "CANCELLED": row["cancelled"]},
        "platform_errors": row["platform_errors"],
        "success_rate": round(row["completed"] / final, 4) if final else None,
        "duration_ms": {"p50": _ms(row["wall_p50"]), "p95": _ms(row["wall_p95"])},
        "latency_ms": {"p50": _ms(row["latency_p50"]), "p95": _ms(row["latency_p95"])},
    }


def hourly(row: asyncpg.Record) -> dict[str, Any]:
    """One hour of the stats' `hourly` series, from its row of storage.agents.hourly_executions."""
    start = row["start"].astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {"start": start, "executions": row["executions"], "completed": row["completed"], "failed": row["failed"]}


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
