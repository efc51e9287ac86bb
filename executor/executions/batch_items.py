"""The items of a batch (batch.py): what each one answers, its state on its way through
admission, and the one transaction that accepts them.

Locks, so that a batch never deadlocks with another batch or a single submission (both take
key -> owner -> entitlement): the keys first, in key order (claim_many), then owner by owner in
order, each owner's live count (an advisory lock) before its entitlement rows, agent by agent.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import asyncpg

from executor.entitlements.service import Entitlements
from executor.errors import Problem, Throttled, TooManyLive
from executor.executions import admission
from executor.observability.logs import current_request
from executor.records.agents import AgentVersion
from executor.records.executions import ExecutionRecord
from executor.settings import Limits, Settings
from executor.storage import executions as execution_sql
from executor.storage import idempotency as idempotency_sql

RACED = None  # accept's result for an item whose key a racing request claimed first


@dataclass
class ItemAnswer:
    """What one item got: its execution, or the problem that refused it."""

    index: int
    record: ExecutionRecord | None = None
    problem: Problem | None = None
    replayed: bool = False

    @property
    def status(self) -> int:
        """The status POST /v1/executions would have answered for this item alone."""
        if self.problem is not None:
            return self.problem.status
        assert self.record is not None
        return 201 if self.record.status.is_final else 202

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.record is not None:
            body["execution"] = self.record.to_dict()
        if self.problem is not None:
            body["problem"] = self.problem.to_dict()
            if isinstance(self.problem, Throttled):  # the Retry-After it would have had, per item
                body["retry_after"] = max(1, math.ceil(self.problem.retry_after_s))
        body["replayed"] = self.replayed
        return body


@dataclass
class Item:
    """One item on its way through admission."""

    index: int
    body: dict[str, Any]  # as POST /v1/executions takes it: without its key
    key: str | None
    answer: ItemAnswer
    request: admission.SubmitRequest | None = None
    parties: admission.Parties | None = None
    fingerprint: bytes = b""
    leader: Item | None = None  # an earlier item with the same key and body: this one gets its answer
    agent: AgentVersion | None = None
    stdin: bytes = b""
    limits: Limits | None = None
    webhook_url: str | None = None

    @property
    def open(self) -> bool:
        """Neither answered yet nor following a leader."""
        return self.answer.problem is None and self.answer.record is None and self.leader is None

    def refuse(self, problem: Problem) -> None:
        self.answer.problem = problem


async def accept(conn: asyncpg.Connection, items: list[Item], *, caller: str, settings: Settings,
                 entitlements: Entitlements) -> dict[int, ExecutionRecord | Problem | None]:
    """The accepting transaction of items that passed every other check (call it inside one):
    per item, by index, its new execution, the problem that refused it, or RACED. As
    service.submit's, item by item: the key claimed, the user's live cap, one entitlement use."""
    ttl_s, cap = settings.idempotency_ttl_s, settings.max_live_per_user
    claims = [(item.key, item.fingerprint) for item in items if item.key is not None]
    claimed = await idempotency_sql.claim_many(conn, caller, claims, ttl_s) if claims else set()
    results: dict[int, ExecutionRecord | Problem | None] = {}
    ready = []
    for item in items:
        if item.key is None or item.key in claimed:
            ready.append(item)
        else:
            results[item.index] = RACED
    admitted: list[tuple[Item, execution_sql.NewExecution]] = []
    refusals: dict[tuple[str, uuid.UUID], Problem] = {}  # (user, agent) -> why its entitlement said no
    ready.sort(key=lambda item: (parties_of(item).owner, str(agent_of(item).agent_id), item.index))
    for owner, group in groupby(ready, key=lambda item: parties_of(item).owner):
        live: int | None = None  # the owner's live executions, counted once under its lock
        for item in group:
            parties, agent = parties_of(item), agent_of(item)
            service, entitlement_id = parties.service, None
            if parties.user is not None:
                if cap:
                    live = await execution_sql.count_live(conn, owner) if live is None else live
                    if live >= cap:
                        results[item.index] = TooManyLive(
                            f"user {parties.user!r} already has {cap} executions pending or running", retry_after_s=1.0)
                        continue
                use = (parties.user, agent.agent_id)
                if use in refusals:  # an entitlement that refused an item refuses the batch's others
                    results[item.index] = refusals[use]
                    continue
                try:
                    entitlement_id, granted_by = await entitlements.take_use(conn, user=parties.user,
                                                                             agent_id=agent.agent_id)
                except Problem as problem:
                    results[item.index] = refusals[use] = problem
                    continue
                if service is None and granted_by.startswith("service:"):
                    service = granted_by
                live = live + 1 if live is not None else None
            assert item.request is not None and item.limits is not None
            admitted.append((item, execution_sql.NewExecution(
                agent_id=agent.agent_id, agent_version=agent.version, owner=parties.owner, input=item.request.input,
                stdin=item.stdin, limits=item.limits, service=service,
                submitted_by=parties.caller if parties.caller != parties.owner else None,
                entitlement_id=entitlement_id, webhook_url=item.webhook_url, request_id=current_request(),
                priority=item.request.priority,
            )))
    admitted.sort(key=lambda pair: pair[0].index)  # created in the order given
    records = await execution_sql.insert_many(conn, [new for _, new in admitted])
    bindings = []
    for (item, _), record in zip(admitted, records, strict=True):
        results[item.index] = record
        if item.key is not None:
            bindings.append((item.key, record.id))
    await idempotency_sql.bind_many(conn, caller, bindings)
    # A refused item does not keep the key it claimed, as a single submission's rollback would not.
    await idempotency_sql.release_unbound(conn, caller, [
        item.key for item in items
        if item.key is not None and item.key in claimed and not isinstance(results[item.index], ExecutionRecord)])
    return results


def parties_of(item: Item) -> admission.Parties:
    assert item.parties is not None
    return item.parties


def agent_of(item: Item) -> AgentVersion:
    assert item.agent is not None
    return item.agent
