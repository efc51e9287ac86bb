"""SQL for the transparency log: its state row, its complete-subtree nodes, its signed heads."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from executor.storage.database import Connection


@dataclass(frozen=True)
class LogState:
    log_id: uuid.UUID
    size: int
    frontier: list[bytes]


@dataclass(frozen=True)
class StoredHead:
    tree_size: int
    root_hash: bytes
    payload: bytes
    keyid: str
    sig: bytes


_HEAD_COLUMNS = "tree_size, root_hash, payload, keyid, sig"


async def reserve_index(conn: asyncpg.Connection) -> LogState:
    """Take the next leaf index: locks the state row until the caller's transaction ends.
    The state is the tree *before* the new leaf; its size is the new leaf's index."""
    row = await conn.fetchrow("SELECT log_id, size, frontier FROM log_state WHERE singleton FOR UPDATE")
    return LogState(row["log_id"], row["size"], list(row["frontier"]))


async def state(db: Connection) -> LogState:
    row = await db.fetchrow("SELECT log_id, size, frontier FROM log_state WHERE singleton")
    return LogState(row["log_id"], row["size"], list(row["frontier"]))


async def nodes(db: Connection, wanted: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The hashes of the given (level, index) nodes, in one query."""
    wanted = list(wanted)
    if not wanted:
        return {}
    levels, indexes = zip(*wanted, strict=True)
    rows = await db.fetch(
        "SELECT n.level, n.idx, n.hash FROM unnest($1::smallint[], $2::bigint[]) AS w (level, idx)"
        " JOIN log_nodes n ON n.level = w.level AND n.idx = w.idx",
        list(levels), list(indexes),
    )
    return {(row["level"], row["idx"]): row["hash"] for row in rows}


async def store_head(db: Connection, head: StoredHead) -> StoredHead:
    """Keep the first head signed for a size; returns the one stored."""
    row = await db.fetchrow(
        "WITH new AS (INSERT INTO tree_heads (tree_size, root_hash, payload, keyid, sig)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tree_size) DO NOTHING RETURNING *)"
        f" SELECT {_HEAD_COLUMNS} FROM new"
        f" UNION ALL SELECT {_HEAD_COLUMNS} FROM tree_heads WHERE tree_size = $1"
        " LIMIT 1",
        head.tree_size, head.root_hash, head.payload, head.keyid, head.sig,
    )
    return _head(row)


async def latest_head(db: Connection) -> StoredHead | None:
    row = await db.fetchrow(f"SELECT {_HEAD_COLUMNS} FROM tree_heads ORDER BY tree_size DESC LIMIT 1")
    return _head(row) if row else None


async def head_of_size(db: Connection, tree_size: int) -> StoredHead | None:
    row = await db.fetchrow(f"SELECT {_HEAD_COLUMNS} FROM tree_heads WHERE tree_size = $1", tree_size)
    return _head(row) if row else None


def _head(row: asyncpg.Record) -> StoredHead:
    return StoredHead(row["tree_size"], row["root_hash"], row["payload"], row["keyid"], row["sig"])
