"""SQL for agents and their versions."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from executor.agents.records import AgentVersion
from executor.pricing import Pricing
from executor.settings import Limits

_SELECT = (
    "SELECT a.id AS agent_id, a.name, a.kind, a.owner, v.version, v.image, v.image_digest, v.command,"
    " v.input_schema, v.output_schema, v.limits, v.pool, v.description, v.created_at, v.module_sha256, v.fuel,"
    " v.pricing"
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
            " output_schema, limits, pool, description, fuel, pricing)"
            " VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            agent_id, version["image"], version["image_digest"], version["command"], version["input_schema"],
            version["output_schema"], version["limits"], version["pool"], version["description"],
            version.get("fuel"), version.get("pricing"),
        )
        row = await conn.fetchrow(_SELECT + " WHERE a.id = $1 AND v.version = 1", agent_id)
    return _record(row)


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
    return await db.fetch(
        "SELECT a.id, a.name, v.version FROM agents a JOIN agent_versions v ON v.agent_id = a.id"
        " WHERE v.image_digest = $1 ORDER BY a.name, v.version",
        image_id,
    )


async def image_use_counts(db: asyncpg.Pool) -> dict[str, int]:
    rows = await db.fetch("SELECT image_digest, count(*) AS n FROM agent_versions"
                          " WHERE image_digest IS NOT NULL GROUP BY image_digest")
    return {row["image_digest"]: row["n"] for row in rows}
