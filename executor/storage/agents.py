"""SQL for agents and their versions."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from executor.pricing import Pricing
from executor.records.agents import AgentVersion
from executor.settings import Limits

_SELECT = (
    "SELECT a.id AS agent_id, a.name, a.kind, a.owner, v.version, v.image, v.image_digest, v.command,"
    " v.input_schema, v.output_schema, v.limits, v.pool, v.description, v.created_at, v.module_sha256, v.fuel,"
    " v.pricing, v.status, v.status_changed_at, v.runtime, v.egress"
    " FROM agents a JOIN agent_versions v ON v.agent_id = a.id"
)


def _record(row: asyncpg.Record) -> AgentVersion:
    values = dict(row)
    values["limits"] = Limits(**values["limits"])
    values["pricing"] = Pricing.from_dict(values["pricing"]) if values["pricing"] else None
    return AgentVersion(**values)


async def insert_agent(db: asyncpg.Pool, *, name: str, kind: str, owner: str, version: dict[str, Any]) -> AgentVersion:
    """Insert an agent with its first version; raises UniqueViolationError for a taken name."""
    agent_id = uuid.uuid4()
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO agents (id, name, kind, owner) VALUES ($1, $2, $3, $4)", agent_id, name, kind, owner
        )
        await conn.execute(
            "INSERT INTO agent_versions (agent_id, version, image, image_digest, command, input_schema,"
            " output_schema, limits, pool, description, fuel, pricing, runtime, egress)"
            " VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            agent_id, version["image"], version["image_digest"], version["command"], version["input_schema"],
            version["output_schema"], version["limits"], version["pool"], version["description"],
            version.get("fuel"), version.get("pricing"), version.get("runtime"), version.get("egress"),
        )
        row = await conn.fetchrow(_SELECT + " WHERE a.id = $1 AND v.version = 1", agent_id)
    return _record(row)


async def insert_version(db: asyncpg.Pool, agent_id: uuid.UUID, version: dict[str, Any]) -> AgentVersion | None:
    """The agent's next version (numbered under the agent row's lock); None when there is no agent."""
    async with db.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT id FROM agents WHERE id = $1 FOR UPDATE", agent_id) is None:
            return None
        number = await conn.fetchval("SELECT max(version) + 1 FROM agent_versions WHERE agent_id = $1", agent_id)
        await conn.execute(
            "INSERT INTO agent_versions (agent_id, version, image, image_digest, command, input_schema,"
            " output_schema, limits, pool, description, fuel, pricing, runtime, egress)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            agent_id, number, version["image"], version["image_digest"], version["command"], version["input_schema"],
            version["output_schema"], version["limits"], version["pool"], version["description"],
            version.get("fuel"), version.get("pricing"), version.get("runtime"), version.get("egress"),
        )
        row = await conn.fetchrow(_SELECT + " WHERE a.id = $1 AND v.version = $2", agent_id, number)
    return _record(row)


async def set_status(db: asyncpg.Pool, agent_id: uuid.UUID, version: int, status: str,
                     allowed_from: tuple[str, ...]) -> AgentVersion | None:
    """Move a version's lifecycle forward; None when it is not in one of `allowed_from`."""
    async with db.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "UPDATE agent_versions SET status = $3, status_changed_at = now()"
            " WHERE agent_id = $1 AND version = $2 AND status = ANY($4::text[]) RETURNING version",
            agent_id, version, status, list(allowed_from),
        )
        if done is None:
            return None
        row = await conn.fetchrow(_SELECT + " WHERE a.id = $1 AND v.version = $2", agent_id, version)
    return _record(row)


async def runnable_version(db: asyncpg.Pool, agent_id: uuid.UUID) -> AgentVersion | None:
    """What runs when no version is asked: the newest published version that has its image,
    else the newest deprecated one; never a withdrawn one."""
    row = await db.fetchrow(
        _SELECT + " WHERE a.id = $1 AND v.status <> 'withdrawn' AND v.image_digest IS NOT NULL"
        " ORDER BY (v.status = 'published') DESC, v.version DESC LIMIT 1",
        agent_id,
    )
    return _record(row) if row else None


async def runnable_versions(db: asyncpg.Pool, *, agent_ids: list[uuid.UUID] | None = None,
                            owner: str | None = None) -> list[AgentVersion]:
    """runnable_version of many agents in one query, by name: of `agent_ids` (None: every agent),
    owned by `owner` (None: anyone's). Agents with nothing runnable are left out."""
    rows = await db.fetch(
        "SELECT DISTINCT ON (a.name) * FROM (" + _SELECT
        + " WHERE v.status <> 'withdrawn' AND v.image_digest IS NOT NULL"
        " AND ($1::uuid[] IS NULL OR a.id = ANY($1::uuid[])) AND ($2::text IS NULL OR a.owner = $2)) AS a"
        " ORDER BY a.name, (a.status = 'published') DESC, a.version DESC",
        agent_ids, owner,
    )
    return [_record(row) for row in rows]


async def list_versions(db: asyncpg.Pool, agent_id: uuid.UUID, *, after: int = 0,
                        limit: int | None = None) -> list[AgentVersion]:
    """Versions after `after`, oldest first (all of them without a limit)."""
    rows = await db.fetch(_SELECT + " WHERE a.id = $1 AND v.version > $2 ORDER BY v.version LIMIT $3",
                          agent_id, after, limit)
    return [_record(row) for row in rows]


async def version_stats(db: asyncpg.Pool, agent_id: uuid.UUID) -> list[asyncpg.Record]:
    """Per version: executions, how they ended, and percentiles of the task's wall time and of
    the end-to-end latency (accepted → final), over final executions."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT v.version, v.status, v.runtime, count(e.id) AS executions,"
        " count(e.id) FILTER (WHERE e.status IN ('PENDING', 'RUNNING')) AS live,"
        " count(e.id) FILTER (WHERE e.status = 'COMPLETED') AS completed,"
        " count(e.id) FILTER (WHERE e.status = 'FAILED') AS failed,"
        " count(e.id) FILTER (WHERE e.status = 'TIMEOUT') AS timeout,"
        " count(e.id) FILTER (WHERE e.status = 'CANCELLED') AS cancelled,"
        " count(e.id) FILTER (WHERE e.error_type = 'platform_error') AS platform_errors,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY e.wall_ms) AS wall_p50,"
        " percentile_cont(0.95) WITHIN GROUP (ORDER BY e.wall_ms) AS wall_p95,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.finished_at - e.created_at) * 1000)"
        "   AS latency_p50,"
        " percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.finished_at - e.created_at) * 1000)"
        "   AS latency_p95,"
        # what its executions ran under, as [runtime, count] pairs (the record's oci_runtime)
        " (SELECT coalesce(json_agg(json_build_array(r.oci_runtime, r.n)), '[]') FROM"
        "   (SELECT oci_runtime, count(*) AS n FROM executions WHERE agent_id = v.agent_id"
        "    AND agent_version = v.version AND oci_runtime IS NOT NULL GROUP BY oci_runtime) r) AS ran_under"
        " FROM agent_versions v LEFT JOIN executions e ON e.agent_id = v.agent_id AND e.agent_version = v.version"
        " WHERE v.agent_id = $1 GROUP BY v.agent_id, v.version, v.status, v.runtime ORDER BY v.version",
        agent_id,
    )
    return rows


async def hourly_executions(db: asyncpg.Pool, agent_id: uuid.UUID, hours: int = 24) -> list[asyncpg.Record]:
    """Executions of the agent (any version) per UTC hour they were accepted in, over the last
    `hours` hours up to the current one, oldest first; an hour without any is a row of zeros."""
    rows: list[asyncpg.Record] = await db.fetch(
        "WITH now_hour AS (SELECT date_trunc('hour', now() AT TIME ZONE 'UTC') AS at),"
        " hours AS (SELECT generate_series(at - ($2::int - 1) * interval '1 hour', at, interval '1 hour')"
        "   AT TIME ZONE 'UTC' AS start FROM now_hour),"
        # one pass over the agent's executions of the period, each put in its hour
        " recent AS (SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS start, status"
        "   FROM executions WHERE agent_id = $1 AND created_at >= (SELECT min(start) FROM hours))"
        " SELECT h.start, count(r.start) AS executions,"
        " count(r.start) FILTER (WHERE r.status = 'COMPLETED') AS completed,"
        " count(r.start) FILTER (WHERE r.status IN ('FAILED', 'TIMEOUT')) AS failed"
        " FROM hours h LEFT JOIN recent r ON r.start = h.start GROUP BY h.start ORDER BY h.start",
        agent_id, hours,
    )
    return rows


async def get_version(db: asyncpg.Pool, agent_id: uuid.UUID, version: int | None = None) -> AgentVersion | None:
    """The given version, or the latest one."""
    if version is None:
        row = await db.fetchrow(_SELECT + " WHERE a.id = $1 ORDER BY v.version DESC LIMIT 1", agent_id)
    else:
        row = await db.fetchrow(_SELECT + " WHERE a.id = $1 AND v.version = $2", agent_id, version)
    return _record(row) if row else None


async def get_by_name(db: asyncpg.Pool, name: str) -> AgentVersion | None:
    row = await db.fetchrow(_SELECT + " WHERE a.name = $1 ORDER BY v.version DESC LIMIT 1", name)
    return _record(row) if row else None


async def list_latest(db: asyncpg.Pool, *, limit: int, after_name: str | None) -> list[AgentVersion]:
    rows = await db.fetch(
        "SELECT DISTINCT ON (a.name) * FROM (" + _SELECT + ") AS a"
        " WHERE ($1::text IS NULL OR a.name > $1) ORDER BY a.name, a.version DESC LIMIT $2",
        after_name, limit,
    )
    return [_record(row) for row in rows]


async def set_module(db: asyncpg.Pool, agent_id: uuid.UUID, version: int, *, image_digest: str,
                     module_sha256: str) -> AgentVersion | None:
    """Record a WASM version's module, once: None when it already had one."""
    async with db.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "UPDATE agent_versions SET image_digest = $3, module_sha256 = $4"
            " WHERE agent_id = $1 AND version = $2 AND module_sha256 IS NULL RETURNING version",
            agent_id, version, image_digest, module_sha256,
        )
        if done is None:
            return None
        row = await conn.fetchrow(_SELECT + " WHERE a.id = $1 AND v.version = $2", agent_id, version)
    return _record(row)


async def versions_using_image(db: asyncpg.Pool, image_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT a.id, a.name, v.version FROM agents a JOIN agent_versions v ON v.agent_id = a.id"
        " WHERE v.image_digest = $1 ORDER BY a.name, v.version",
        image_id,
    )
    return rows


async def image_use_counts(db: asyncpg.Pool) -> dict[str, int]:
    rows = await db.fetch("SELECT image_digest, count(*) AS n FROM agent_versions"
                          " WHERE image_digest IS NOT NULL GROUP BY image_digest")
    return {row["image_digest"]: row["n"] for row in rows}
