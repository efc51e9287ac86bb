"""Many submissions in one request: POST /v1/executions/batch (docs/batches.md).

Each item is judged as POST /v1/executions would judge it alone (admission.py, service.py), in
the order given: its own rate-limit tokens, its own entitlement use, its own Idempotency-Key
(`idempotency_key`), and a refusal of one never undoes another. What the items share is the
round trips:

  fingerprints, input checks   one trip to the validation threads each
  replays                      one query for every key
  acceptance                   one transaction: the keys claimed in one statement, one live
                               count per owner, a use taken per item, every row inserted in
                               one pipelined statement, the keys bound in one
  the jobs                     one pipelined XADD

Rate limits stay one GCRA call per item (all-or-nothing across that item's buckets). The items,
their answers and the accepting transaction are in batch_items.py.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import asyncpg
from redis.exceptions import RedisError

from executor import ratelimit
from executor.errors import (
    Conflict,
    IdempotencyKeyReused,
    InputInvalid,
    PayloadTooLarge,
    Problem,
    QueueFull,
    QueueUnavailable,
    RateLimited,
    RequestInvalid,
)
from executor.executions import admission
from executor.executions.batch_items import RACED, Item, ItemAnswer, accept
from executor.executions.service import Executions, Watch
from executor.limits import check_runtime_floor, resolve_limits
from executor.observability.logs import current_request
from executor.records.agents import AgentVersion
from executor.records.executions import ErrorType, ExecutionError, ExecutionRecord, Outcome, Status, encode_input
from executor.records.principals import Principal
from executor.schemas import off_loop, violations
from executor.storage import executions as execution_sql
from executor.storage import idempotency as idempotency_sql
from executor.webhooks.targets import check_url

log = logging.getLogger(__name__)

_ATTEMPTS = 3  # of the accepting transaction, should PostgreSQL still find a deadlock


def _fingerprints(bodies: list[dict[str, Any]]) -> list[bytes]:
    return [admission.fingerprint(body) for body in bodies]


def _encoded_and_checked(pairs: list[tuple[Any, Any]], budget_ms: float,
                         max_bytes: int) -> list[tuple[bytes, list[dict[str, str]]]]:
    """Per (schema, input): the stdin bytes and the schema's violations (not checked past
    `max_bytes`: the input is refused for its size), as service.submit finds them."""
    out = []
    for schema, value in pairs:
        stdin = encode_input(value)
        out.append((stdin, violations(schema, value, budget_ms=budget_ms) if len(stdin) <= max_bytes else []))
    return out


class BatchSubmission:
    """One caller's batch, submitted once: `await BatchSubmission(executions, caller).submit(items)`."""

    def __init__(self, executions: Executions, principal: Principal) -> None:
        self.executions = executions
        self.settings = executions.settings
        self.principal = principal
        self.caller = principal.party

    async def submit(self, bodies: list[dict[str, Any]], *, wait_s: float = 0.0) -> list[ItemAnswer]:
        """One answer per item, in order. `bodies` matched the contract's SubmitBatch items."""
        cap = self.settings.max_batch_items
        if not 0 < len(bodies) <= cap:
            detail = f"1 to {cap} items (EXECUTOR_MAX_BATCH_ITEMS)"
            raise RequestInvalid(f"a batch holds 1 to {cap} items; this one has {len(bodies)}",
                                 errors=[{"pointer": "/items", "detail": detail}])
        items = [self._parse(index, body) for index, body in enumerate(bodies)]
        await self._match_keys(items)
        await self._admit([item for item in items if item.open])
        await self._check_inputs([item for item in items if item.open])
        created = await self._store([item for item in items if item.open])
        watches = await self._enqueue(created, watch=wait_s > 0)
        if wait_s > 0:
            await self._wait(items, wait_s, watches)
        for item in items:
            self.executions.metrics.refused(item.answer.problem)  # a refusal for now is counted per item
        for item in items:
            if item.leader is not None:  # the same key and body as an earlier item: its answer, replayed
                leader = item.leader.answer
                item.answer.record, item.answer.problem = leader.record, leader.problem
                item.answer.replayed = leader.record is not None
        return [item.answer for item in items]

    def _parse(self, index: int, body: dict[str, Any]) -> Item:
        fields = {name: value for name, value in body.items() if name != "idempotency_key"}
        item = Item(index, fields, body.get("idempotency_key"), ItemAnswer(index))
        try:
            item.request = admission.parse_request(fields)
            item.parties = admission.parties_of(self.principal, item.request)
        except Problem as problem:
            item.refuse(problem)
        return item

    async def _match_keys(self, items: list[Item]) -> None:
        """Keys: a repeat within the batch follows the first item with its key (or is refused,
        with another body); a key already stored replays its execution (or is refused)."""
        keyed = [item for item in items if item.key is not None and item.open]
        if not keyed:
            return
        for item, fingerprint in zip(keyed, await off_loop(_fingerprints, [item.body for item in keyed]), strict=True):
            item.fingerprint = fingerprint
        leaders: dict[str, Item] = {}
        for item in keyed:
            assert item.key is not None
            leader = leaders.setdefault(item.key, item)
            if leader is item:
                continue
            if leader.fingerprint == item.fingerprint:
                item.leader = leader
            else:
                item.refuse(IdempotencyKeyReused(f"item {leader.index} of this batch has this idempotency_key "
                                                 "with a different request"))
        await self._replay(list(leaders.values()))

    async def _replay(self, items: list[Item]) -> None:
        """Items whose key is stored: the execution it names, or refused for another body."""
        db, ttl_s = self.executions.db, self.settings.idempotency_ttl_s
        stored = await idempotency_sql.find_many(db, self.caller, [item.key for item in items if item.key], ttl_s)
        bound = {key: found for key, found in stored.items() if found.execution_id is not None}
        if not bound:
            return
        records = await execution_sql.get_many(db, [found.execution_id for found in bound.values()
                                                    if found.execution_id is not None])
        for item in items:
            found = bound.get(item.key or "")
            if found is None:
                continue
            if found.request_sha256 != item.fingerprint:
                item.refuse(IdempotencyKeyReused("this Idempotency-Key was used with a different request body"))
                continue
            assert found.execution_id is not None
            item.answer.record, item.answer.replayed = records[found.execution_id], True

    async def _admit(self, items: list[Item]) -> None:
        """In order, as service.submit: rate limits, queue depth, the agent version."""
        if not items:
            return
        queue, limiter = self.executions.queue, self.executions.limiter
        agents: dict[tuple[str, int | None], AgentVersion | Problem] = {}
        depth, taken = 0, 0  # read once; `taken`: earlier items that may be enqueued, counted in it
        for n, item in enumerate(items):
            assert item.request is not None and item.parties is not None
            try:
                if n == 0:
                    depth = await queue.depth()
                shed = await self.executions.shedder.retry_after_s(item.request.priority)  # cached: no round trip
                decision = await limiter.acquire(admission.rate_buckets(self.principal, item.parties, self.settings))
            except RedisError:  # the same Redis carries the jobs: nothing could run them anyway
                for rest in items[n:]:
                    rest.refuse(QueueUnavailable("Redis (rate limits and the job queue) is unavailable; retry later"))
                return
            if shed is not None:
                item.refuse(self.executions.shed(item.request.priority, shed))
                continue
            if depth + taken >= self.settings.max_queue_depth:
                item.refuse(QueueFull(f"{depth + taken} jobs are waiting or running, the most this service queues; "
                                      "retry later", retry_after_s=self.executions.drain_estimate_s(depth + taken)))
                continue
            if not decision.allowed:
                item.refuse(RateLimited(f"too many submissions; retry in {decision.retry_after_s:.1f} s",
                                        retry_after_s=decision.retry_after_s, headers=ratelimit.headers(decision)))
                continue
            agent = await self._agent(item.request, agents)
            if isinstance(agent, Problem):
                item.refuse(agent)
                continue
            if agent.image_digest is None:
                item.refuse(Conflict(f"agent {agent.agent_id} version {agent.version} has no module yet: "
                                     "PUT /v1/agents/{id}/module first"))
                continue
            item.agent = agent
            taken += 1

    async def _agent(self, request: admission.SubmitRequest,
                     found: dict[tuple[str, int | None], AgentVersion | Problem]) -> AgentVersion | Problem:
        """The version an item pins, looked up once per (agent, version) in the batch."""
        key = (str(request.agent_id), request.version)
        if key not in found:
            try:
                found[key] = await self.executions.agents.for_run(request.agent_id, request.version)
            except Problem as problem:
                found[key] = problem
        return found[key]

    async def _check_inputs(self, items: list[Item]) -> None:
        """Every input against its agent's schema in one trip off the loop; then limits and webhook."""
        if not items:
            return
        pairs = []
        for item in items:
            assert item.agent is not None and item.request is not None
            pairs.append((item.agent.input_schema, item.request.input))
        max_bytes = self.settings.max_input_bytes
        checked = await off_loop(_encoded_and_checked, pairs, self.settings.schema_budget_ms, max_bytes)
        for item, (stdin, found) in zip(items, checked, strict=True):
            assert item.agent is not None and item.request is not None
            if len(stdin) > max_bytes:
                item.refuse(PayloadTooLarge(f"input is larger than {max_bytes} bytes"))
                continue
            if found:
                item.refuse(InputInvalid(f"{len(found)} violation(s) of the agent's input schema", errors=found))
                continue
            try:
                item.limits = resolve_limits(item.request.limits, item.agent.limits, self.settings.max_limits)
                check_runtime_floor(item.limits, item.agent.runtime or self.settings.oci_runtime)
                if item.request.webhook_url:
                    item.webhook_url = check_url(item.request.webhook_url, self.settings)
            except Problem as problem:
                item.refuse(problem)
                continue
            item.stdin = stdin

    async def _store(self, items: list[Item]) -> list[Item]:
        """The accepting transaction; the items it created an execution for."""
        if not items:
            return []
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self.executions.db.acquire() as conn, conn.transaction():
                    results = await accept(conn, items, caller=self.caller, settings=self.settings,
                                           entitlements=self.executions.entitlements)
                break
            except asyncpg.DeadlockDetectedError:
                if attempt == _ATTEMPTS:
                    raise
                log.warning("a batch's accepting transaction deadlocked; trying it again (%d)", attempt)
        created, raced = [], []
        for item in items:
            result = results[item.index]
            if isinstance(result, ExecutionRecord):
                item.answer.record = result
                created.append(item)
            elif result is RACED:
                raced.append(item)
            else:
                item.refuse(result)
        if raced:  # a racing request with the key committed first: answer with its execution
            await self._replay(raced)
            for item in raced:
                if item.open:  # only if the key expired in between
                    item.refuse(Conflict("the Idempotency-Key is in use by a request that has not finished; retry"))
        return created

    async def _enqueue(self, created: list[Item], *, watch: bool) -> dict[uuid.UUID, Watch]:
        """One job per new execution, in one pipeline; with `watch`, a waiter registered first for
        each (as submit(watch=True)). An execution the queue refused is finished FAILED now (nothing
        would run it) and its item answers 503, as a single submission would."""
        if not created:
            return {}
        executions = self.executions
        records = [item.answer.record for item in created if item.answer.record is not None]
        watches: dict[uuid.UUID, Watch] = {}
        if watch:
            watches = {r.id: Watch(executions.events.waiter(r.id), executions.events.generation) for r in records}
        try:
            replies: list[str | Exception] = await executions.queue.enqueue_many(
                [r.id for r in records], request_id=current_request(), priorities=[r.priority for r in records])
        except Exception as exc:  # the connection failed: any of them may be missing
            replies = [exc] * len(records)
        for item, record, reply in zip(created, records, replies, strict=True):
            if not isinstance(reply, Exception):
                continue
            log.error("could not enqueue execution %s: %s", record.id, reply)
            error = ExecutionError(ErrorType.PLATFORM_ERROR, "the job queue did not accept the execution")
            await executions.finisher.finish(record, Outcome(Status.FAILED, error=error), from_status=Status.PENDING,
                                             agent=item.agent)
            dropped = watches.pop(record.id, None)
            if dropped is not None:
                executions.events.discard(record.id, dropped.future)
            item.answer.record = None
            item.refuse(QueueUnavailable("the job queue did not accept the execution; retry later"))
        return watches

    async def _wait(self, items: list[Item], wait_s: float, watches: dict[uuid.UUID, Watch]) -> None:
        """Every execution answered, waited for at once, each up to wait_s (as ?wait= alone)."""
        waiting: dict[uuid.UUID, ExecutionRecord] = {}
        for item in items:
            if item.answer.record is not None:
                waiting.setdefault(item.answer.record.id, item.answer.record)
        finals = await asyncio.gather(*(self.executions.wait_final(record, wait_s, watch=watches.get(record_id))
                                        for record_id, record in waiting.items()))
        final_by_id = dict(zip(waiting, finals, strict=True))
        for item in items:
            if item.answer.record is not None:
                item.answer.record = final_by_id[item.answer.record.id]

