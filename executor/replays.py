"""Idempotency-Key on the creating POSTs (docs/idempotency.md): a retry with the same key and the
same request replays the first answer instead of creating a second thing.

POST /v1/executions and its batch bind their key to the execution inside the transaction that
creates it (storage/idempotency.py). The other creating POSTs (an agent, a version, a token, an
attestation) are wrapped from outside instead, by the API's replay middleware, around any
handler: the key is claimed before the handler runs, its answer kept when it succeeds, and the
key given up when it does not. A claim is one INSERT ... ON CONFLICT, so processes sharing the
database agree on which request holds a key.

    claim ──▶ the handler runs ──▶ 2xx: complete (the answer is kept, replayed until the TTL)
                               └─▶ anything else, or an exception: release (a retry runs again)

While the first request runs, another with its key is refused (409 `conflict`: retry). A key
whose request never finished (its process died) is free again after IN_FLIGHT_LEASE_S.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from executor.errors import Conflict, IdempotencyKeyReused
from executor.schemas import off_loop
from executor.storage import replays as replay_sql
from executor.sweeps import Sweep, sweep_interval_s

log = logging.getLogger(__name__)

# How long a claimed key with no answer yet holds: past it, its request is taken for dead and a
# retry runs. Far above any creating request's duration (they take milliseconds to seconds).
IN_FLIGHT_LEASE_S = 300.0


def fingerprint(method: str, path: str, body: Any) -> bytes:
    """sha256 of the request a replay must match: method, path and the body's canonical JSON
    (key order does not matter). Up to a megabyte to serialize: Replays.claim runs it off the loop."""
    canonical = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False).encode()
    return hashlib.sha256(canonical).digest()


@dataclass(frozen=True)
class Answer:
    """A successful answer as it was first given: replayed byte for byte."""

    status: int
    headers: dict[str, str]  # Content-Type included
    body: bytes


@dataclass(frozen=True)
class Claim:
    """The right to run one request for a caller's key, until it completes or releases it."""

    caller: str
    key: str
    claim_id: uuid.UUID


class Replays:
    """Claims of Idempotency-Keys, the answers kept for them, and the sweep of expired ones."""

    def __init__(self, db: asyncpg.Pool, ttl_s: float, *, lease_s: float = IN_FLIGHT_LEASE_S) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.lease_s = lease_s
        self._sweep = Sweep("replay-sweep", sweep_interval_s(ttl_s), self.purge)

    async def claim(self, caller: str, key: str, method: str, path: str, body: Any) -> Claim | Answer:
        """The key for this request (a Claim: run it), or the answer to replay. Raises
        IdempotencyKeyReused when the key was used for another request, Conflict while the
        request that holds it has not finished."""
        request_sha256 = await off_loop(fingerprint, method, path, body)
        for _ in range(3):
            claim = Claim(caller, key, uuid.uuid4())
            if await replay_sql.claim(self.db, caller, key, request_sha256, claim.claim_id,
                                      ttl_s=self.ttl_s, lease_s=self.lease_s):
                return claim
            stored = await replay_sql.find(self.db, caller, key, self.ttl_s)
            if stored is None:
                continue  # released or expired between the two statements: claim again
            if stored.request_sha256 != request_sha256:
                raise IdempotencyKeyReused("this Idempotency-Key was used with a different request "
                                           "(method, path or body)")
            if stored.status is None:
                break
            return Answer(stored.status, stored.headers, stored.body)
        raise Conflict("the Idempotency-Key is in use by a request that has not finished; retry")

    async def complete(self, claim: Claim, answer: Answer) -> None:
        """Keep the successful answer of the claimed request, for replays until the TTL. Never
        raises: the answer goes out anyway; the key then stays held until its lease ends."""
        try:
            kept = await replay_sql.complete(self.db, claim.caller, claim.key, claim.claim_id, answer.status,
                                             answer.headers, answer.body)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("could not keep the answer for an Idempotency-Key of %s: %s", claim.caller,
                        type(exc).__name__)
            return
        if not kept:  # its lease ran out and a retry claimed the key
            log.warning("an Idempotency-Key of %s was claimed again before its first request finished",
                        claim.caller)

    async def release(self, claim: Claim) -> None:
        """Give up the key of a request that did not succeed, so that a retry runs it again.
        Never raises: a key not released stays held until its lease ends."""
        try:
            await replay_sql.release(self.db, claim.caller, claim.key, claim.claim_id)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("could not release an Idempotency-Key of %s: %s", claim.caller, type(exc).__name__)

    async def purge(self) -> int:
        """Delete every expired row (their answers may hold a token's secret); how many."""
        deleted = 0
        while True:
            count = await replay_sql.delete_expired(self.db, self.ttl_s)
            deleted += count
            if count < replay_sql.PURGE_BATCH:
                return deleted

    def start(self) -> None:
        self._sweep.start()

    async def stop(self) -> None:
        await self._sweep.stop()
