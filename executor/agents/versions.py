"""An agent's versions: publishing a new one, its lifecycle, which one runs, and its stats.

A published version never changes (schemas, image digest or module hash, limits, pricing);
what moves is its status, one way: published → deprecated → withdrawn. A deprecated
version still runs when asked for by number; a withdrawn one never runs again. Executions
pin the version they ran, so their records and receipts stay true after either.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from executor.agents import service as agents
from executor.errors import Conflict, Forbidden, NotFound, VersionWithdrawn
from executor.records.agents import AgentVersion
from executor.records.principals import Principal, Role
from executor.settings import Settings
from executor.storage import agents as agent_sql

_MOVES = {"deprecated": ("published",), "withdrawn": ("published", "deprecated")}


def check_may_manage(caller: Principal, agent: AgentVersion) -> None:
    """Operators manage every agent; a service manages the agents it registered."""
    if caller.role is not Role.OPERATOR and agent.owner != caller.party:
        raise Forbidden(f"agent {agent.agent_id} belongs to {agent.owner}; only it or an operator may change it")


async def publish(db: asyncpg.Pool, settings: Settings, resolve_image: agents.ImageResolver, caller: Principal,
                  agent_id: str, body: Any, engine_runtimes: agents.RuntimeLister | None = None) -> AgentVersion:
    current = await agents.get(db, agent_id)
    check_may_manage(caller, current)
    fields = await agents.parse_version(body, current.kind, settings, resolve_image, engine_runtimes)
    created = await agent_sql.insert_version(db, current.agent_id, fields)
    if created is None:
        raise NotFound(f"no agent {agent_id!r}")
    return created


async def move(db: asyncpg.Pool, caller: Principal, agent_id: str, version: int, status: str) -> AgentVersion:
    """Deprecate or withdraw a version (moving to where it already is is a no-op)."""
    current = await agents.get(db, agent_id, version)
    check_may_manage(caller, current)
    if current.status == status:
        return current
    moved = await agent_sql.set_status(db, current.agent_id, version, status, _MOVES[status])
    if moved is None:
        raise Conflict(f"version {version} is {current.status}: it cannot become {status}")
    return moved


async def for_run(db: asyncpg.Pool, agent_id: Any, version: int | None) -> AgentVersion:
    """The version an execution will pin: the one asked for, unless withdrawn; else the
    newest published version with its image (then the newest deprecated one)."""
    if version is not None:
        found = await agents.get(db, agent_id, version)
        if found.status == "withdrawn":
            raise VersionWithdrawn(f"agent {found.agent_id} version {version} is withdrawn")
        return found
    # One query on the hot path; the others only say why nothing can run.
    runnable = await agent_sql.runnable_version(db, agents.parse_id(agent_id))
    if runnable is not None:
        return runnable
    latest = await agents.get(db, agent_id)
    if all(v.status == "withdrawn" for v in await agent_sql.list_versions(db, latest.agent_id)):
        raise VersionWithdrawn(f"every version of agent {latest.agent_id} is withdrawn")
    return latest  # a WASM agent without its module yet: submission says so


async def stats(db: asyncpg.Pool, agent_id: str) -> dict[str, Any]:
    agent = await agents.get(db, agent_id)
    versions = []
    for row in await agent_sql.version_stats(db, agent.agent_id):
        final = row["completed"] + row["failed"] + row["timeout"] + row["cancelled"]
        versions.append({
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
        })
    return {"agent_id": str(agent.agent_id), "name": agent.name, "versions": versions}


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
