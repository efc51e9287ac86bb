"""The transparency log: one append-only RFC 9162 Merkle tree over every receipt, kept
in PostgreSQL, with signed tree heads and inclusion and consistency proofs.

Order with several workers: an append runs inside the transaction that finishes the
execution and starts by locking the log's one state row (`reserve_index`); the next
finisher waits there until this transaction commits or rolls back. So indices are
handed out one at a time, a rolled-back append gives its index back (no gap), and
the primary keys on (level, index) and on the receipt's index refuse a duplicate.

Every complete subtree is stored once as it completes, so a proof for any tree size
is a fold of at most ~2·log2(n) stored nodes fetched in one query.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from executor.receipts import dsse, merkle
from executor.receipts.canonical import canonical_json
from executor.receipts.keys import Signer
from executor.receipts.statement import rfc3339
from executor.storage import transparency as log_sql
from executor.storage.database import Connection

logger = logging.getLogger(__name__)


class ProofUnavailable(ValueError):
    """A proof asked for sizes or indices the log does not have."""


@dataclass(frozen=True)
class SignedHead:
    tree_size: int
    root_hash: bytes
    envelope: dsse.Envelope

    @property
    def statement(self) -> dict[str, Any]:
        statement: dict[str, Any] = json.loads(self.envelope.payload)  # head_statement's, signed by us
        return statement

    def to_json(self) -> dict[str, Any]:
        return self.envelope.to_json()


async def reserve(conn: asyncpg.Connection) -> log_sql.LogState:
    """The log as it is, locked until the caller's transaction ends: its size is the next leaf's index."""
    return await log_sql.reserve_index(conn)


def extend(reserved: log_sql.LogState, leaf_data: bytes) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
    """The log's frontier with the leaf at the reserved index, and the nodes that leaf completes."""
    return merkle.append(reserved.frontier, reserved.size, merkle.leaf_hash(leaf_data))


def head_statement(log_id: uuid.UUID, tree_size: int, root_hash: bytes, key_id: str,
                   timestamp: datetime) -> dict[str, Any]:
    return {"log_id": str(log_id), "tree_size": tree_size, "root_hash": root_hash.hex(),
            "timestamp": rfc3339(timestamp), "key_id": key_id}


async def sign_head(db: Connection, signer: Signer) -> SignedHead:
    """A signed head of the log as it is now (the one already stored for this size, if any)."""
    state = await log_sql.state(db)
    existing = await log_sql.head_of_size(db, state.size)
    if existing is not None:
        return _signed(existing)
    await signer.refresh(db)
    key = signer.current
    root_hash = merkle.root(state.frontier)
    payload = canonical_json(head_statement(state.log_id, state.size, root_hash, key.kid, datetime.now(UTC)))
    signature = dsse.sign(dsse.TREE_HEAD_PAYLOAD_TYPE, payload, key.key, key.kid)
    stored = await log_sql.store_head(db, log_sql.StoredHead(state.size, root_hash, payload, key.kid, signature.sig))
    return _signed(stored)


async def keep_signing_heads(db: asyncpg.Pool, signer: Signer, interval_s: float) -> None:
    """Sign a head every `interval_s` when the log grew (a background task of every process)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await sign_head(db, signer)
        except Exception as exc:  # a database blip: the next round tries again
            logger.warning("could not sign a tree head: %s", exc)


async def head_covering(db: Connection, signer: Signer, index: int) -> SignedHead:
    """The newest signed head whose tree holds leaf `index`, signing one now if none does."""
    latest = await log_sql.latest_head(db)
    if latest is not None and latest.tree_size > index:
        return _signed(latest)
    return await sign_head(db, signer)


async def head_of_size(db: Connection, tree_size: int) -> SignedHead | None:
    stored = await log_sql.head_of_size(db, tree_size)
    return _signed(stored) if stored else None


async def size(db: Connection) -> int:
    return (await log_sql.state(db)).size


async def inclusion_proof(db: Connection, index: int, tree_size: int) -> list[bytes]:
    current = await size(db)
    if not 0 <= index < tree_size <= current:
        raise ProofUnavailable(f"need 0 <= index < size <= {current} (the log's size); "
                               f"got index {index}, size {tree_size}")
    return await _assemble(db, merkle.inclusion_plan(index, tree_size))


async def consistency_proof(db: Connection, old_size: int, new_size: int) -> list[bytes]:
    current = await size(db)
    if not 0 < old_size <= new_size <= current:
        raise ProofUnavailable(f"need 0 < from <= to <= {current} (the log's size); got from {old_size}, to {new_size}")
    return await _assemble(db, merkle.consistency_plan(old_size, new_size))


async def _assemble(db: Connection, plan: merkle.ProofPlan) -> list[bytes]:
    found = await log_sql.nodes(db, plan.nodes)
    try:
        return plan.assemble(found)
    except KeyError as exc:  # a stored tree missing a node it must have: never hide that
        raise RuntimeError(f"the log is missing node {exc}") from None


def _signed(head: log_sql.StoredHead) -> SignedHead:
    envelope = dsse.Envelope(dsse.TREE_HEAD_PAYLOAD_TYPE, head.payload, (dsse.Signature(head.keyid, head.sig),))
    return SignedHead(head.tree_size, head.root_hash, envelope)
