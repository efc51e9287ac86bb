"""SQL for receipts, their witnesses' attestations, and the published signing keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from executor.storage.database import Connection

_RECEIPT = "SELECT execution_id, log_index, payload, keyid, sig FROM receipts"


@dataclass(frozen=True)
class StoredReceipt:
    execution_id: uuid.UUID
    log_index: int
    payload: bytes
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class StoredAttestation:
    keyid: str
    sig: bytes
    public_key: dict[str, Any]
    attested_by: str
    created_at: datetime


@dataclass(frozen=True)
class PublishedKey:
    kid: str
    public_key: bytes
    created_at: datetime
    retired_at: datetime | None


async def insert_receipt(conn: asyncpg.Connection, receipt: StoredReceipt, nodes: list[tuple[int, int, bytes]],
                         frontier: list[bytes]) -> None:
    """Store a receipt, the log nodes its leaf completed and the log's new size and frontier, in
    one statement (one round trip while the log's state row is locked)."""
    levels, indexes, hashes = zip(*nodes, strict=True)
    await conn.execute(
        "WITH receipt AS (INSERT INTO receipts (execution_id, log_index, payload, keyid, sig)"
        " VALUES ($1, $2, $3, $4, $5)),"
        " nodes AS (INSERT INTO log_nodes (level, idx, hash)"
        " SELECT * FROM unnest($6::smallint[], $7::bigint[], $8::bytea[]))"
        " UPDATE log_state SET size = $2 + 1, frontier = $9 WHERE singleton",
        receipt.execution_id, receipt.log_index, receipt.payload, receipt.keyid, receipt.sig,
        list(levels), list(indexes), list(hashes), frontier,
    )


async def get_receipt(db: Connection, execution_id: uuid.UUID) -> StoredReceipt | None:
    row = await db.fetchrow(_RECEIPT + " WHERE execution_id = $1", execution_id)
    return StoredReceipt(*row.values()) if row else None


async def insert_attestation(db: Connection, execution_id: uuid.UUID, attestation: StoredAttestation) -> bool:
    """False when this key already attested this receipt."""
    done = await db.fetchval(
        "INSERT INTO receipt_attestations (execution_id, keyid, sig, public_key, attested_by)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
        execution_id, attestation.keyid, attestation.sig, attestation.public_key, attestation.attested_by,
    )
    return bool(done)


async def attestations(db: Connection, execution_id: uuid.UUID) -> list[StoredAttestation]:
    rows = await db.fetch("SELECT keyid, sig, public_key, attested_by, created_at FROM receipt_attestations"
                          " WHERE execution_id = $1 ORDER BY created_at, keyid", execution_id)
    return [StoredAttestation(*row.values()) for row in rows]


async def publish_keys(db: Connection, keys: Iterable[tuple[str, bytes]]) -> None:
    """Publish public keys (kid, raw 32 bytes); a key already known, retired or not, is left as it is."""
    keys = list(keys)
    if keys:
        kids, publics = zip(*keys, strict=True)
        await db.execute("INSERT INTO signing_keys (kid, public_key) SELECT * FROM unnest($1::text[], $2::bytea[])"
                         " ON CONFLICT (kid) DO NOTHING", list(kids), list(publics))


async def published_keys(db: Connection, *, include_retired: bool = False) -> list[PublishedKey]:
    rows = await db.fetch("SELECT kid, public_key, created_at, retired_at FROM signing_keys"
                          " WHERE $1 OR retired_at IS NULL ORDER BY created_at, kid", include_retired)
    return [PublishedKey(*row.values()) for row in rows]


async def retire_key(db: Connection, kid: str) -> datetime | None:
    """Stop publishing a key; returns when it was retired (None for an unknown key)."""
    retired_at: datetime | None = await db.fetchval(
        "UPDATE signing_keys SET retired_at = COALESCE(retired_at, now()) WHERE kid = $1 RETURNING retired_at", kid)
    return retired_at
