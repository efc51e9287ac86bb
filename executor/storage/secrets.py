"""SQL for agents' secrets (table agent_secrets, migration 0014): sealed values only, never a
value in the clear. Writing a name again replaces its sealed bytes and counts one more version."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from executor.storage.database import Connection

# Re-sealed per statement after a key rotation: a large table moves over several pages.
RESEAL_PAGE = 500


@dataclass(frozen=True)
class SecretEntry:
    """What may be shown of a secret: its name and how many times it was written, never its value."""

    name: str
    version: int
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "created_at": _iso(self.created_at),
                "updated_at": _iso(self.updated_at)}


@dataclass(frozen=True)
class SealedRow:
    agent_id: uuid.UUID
    name: str
    version: int
    key_id: str
    sealed: bytes = field(repr=False)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _entry(row: asyncpg.Record) -> SecretEntry:
    return SecretEntry(row["name"], row["version"], row["created_at"], row["updated_at"])


async def put(db: Connection, agent_id: uuid.UUID, name: str, key_id: str, sealed: bytes) -> SecretEntry:
    """Write a name (version 1) or replace its value (one version more), in one statement."""
    row = await db.fetchrow(
        "INSERT INTO agent_secrets (agent_id, name, version, key_id, sealed) VALUES ($1, $2, 1, $3, $4)"
        " ON CONFLICT (agent_id, name) DO UPDATE SET version = agent_secrets.version + 1,"
        " key_id = EXCLUDED.key_id, sealed = EXCLUDED.sealed, updated_at = now()"
        " RETURNING name, version, created_at, updated_at",
        agent_id, name, key_id, sealed,
    )
    return _entry(row)


async def list_page(db: Connection, agent_id: uuid.UUID, *, after: str | None, limit: int) -> list[SecretEntry]:
    """An agent's secrets by name, after the name `after`."""
    rows = await db.fetch(
        "SELECT name, version, created_at, updated_at FROM agent_secrets"
        " WHERE agent_id = $1 AND ($2::text IS NULL OR name > $2) ORDER BY name LIMIT $3",
        agent_id, after, limit,
    )
    return [_entry(row) for row in rows]


async def delete(db: Connection, agent_id: uuid.UUID, name: str) -> bool:
    deleted = await db.fetchval("DELETE FROM agent_secrets WHERE agent_id = $1 AND name = $2 RETURNING true",
                                agent_id, name)
    return bool(deleted)


async def get_sealed(db: Connection, agent_id: uuid.UUID, name: str) -> SealedRow | None:
    row = await db.fetchrow(
        "SELECT agent_id, name, version, key_id, sealed FROM agent_secrets WHERE agent_id = $1 AND name = $2",
        agent_id, name,
    )
    return _sealed(row) if row else None


async def not_under(db: Connection, key_id: str, *, after: tuple[uuid.UUID, str] | None,
                    limit: int = RESEAL_PAGE) -> list[SealedRow]:
    """A page of the rows sealed under another key than `key_id`, in (agent_id, name) order."""
    after_agent, after_name = after if after else (None, None)
    rows = await db.fetch(
        "SELECT agent_id, name, version, key_id, sealed FROM agent_secrets WHERE key_id <> $1"
        " AND ($2::uuid IS NULL OR (agent_id, name) > ($2, $3::text)) ORDER BY agent_id, name LIMIT $4",
        key_id, after_agent, after_name, limit,
    )
    return [_sealed(row) for row in rows]


async def replace_sealed(db: Connection, old: SealedRow, key_id: str, sealed: bytes) -> bool:
    """Re-seal one row as it was read: False when it was written or deleted meanwhile (a newer
    write is sealed under the current key already). Neither its version nor its updated_at move:
    its value did not change."""
    done = await db.fetchval(
        "UPDATE agent_secrets SET key_id = $5, sealed = $6"
        " WHERE agent_id = $1 AND name = $2 AND version = $3 AND key_id = $4 RETURNING true",
        old.agent_id, old.name, old.version, old.key_id, key_id, sealed,
    )
    return bool(done)


def _sealed(row: asyncpg.Record) -> SealedRow:
    return SealedRow(row["agent_id"], row["name"], row["version"], row["key_id"], bytes(row["sealed"]))
