"""Writing the end of an execution: its final state, cost, receipt, the entitlement use it
gives back, and its webhook, in one transaction.

Every path to a final state goes through here (the worker, a cancel before the
start, a job the queue refused, a worker that restarted mid-run), so no execution
is ever final without its receipt, and its webhook is queued exactly when it is final.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from executor import faults
from executor.observability.metrics import Metrics
from executor.pricing import MeteredUsage, cost_of
from executor.receipts import dsse
from executor.receipts.egress import egress_digest
from executor.receipts.issuer import ReceiptIssuer
from executor.records.agents import AgentVersion
from executor.records.executions import ErrorType, ExecutionRecord, Outcome, Status
from executor.storage import agents as agent_sql
from executor.storage import entitlements as entitlement_sql
from executor.storage import executions as execution_sql
from executor.storage import webhooks as webhook_sql
from executor.storage.receipts import StoredReceipt
from executor.webhooks import signing

log = logging.getLogger(__name__)


class Finisher:
    def __init__(self, db: asyncpg.Pool, issuer: ReceiptIssuer, *, metrics: Metrics | None = None) -> None:
        self.db = db
        self.issuer = issuer
        self.metrics = metrics if metrics is not None else Metrics()
        self.on_webhook: Callable[[], None] | None = None  # wakes this process's dispatcher after a commit

    async def finish(self, record: ExecutionRecord, outcome: Outcome, *, from_status: Status,
                     agent: AgentVersion | None = None, worker: str | None = None) -> ExecutionRecord | None:
        """`record` (in `from_status`, run by `worker` when given) → `outcome`; None when it had
        left that state meanwhile (a final state stays final: then nothing is written)."""
        if agent is None:
            agent = await agent_sql.get_version(self.db, record.agent_id, record.agent_version)
            assert agent is not None, "an execution's agent version is never deleted"
        # The platform's failures and tasks that never ran are not charged, and give their
        # entitlement use back: a use is consumed exactly when a charge is.
        charged = outcome.raw_output is not None and not (
            outcome.error is not None and outcome.error.type is ErrorType.PLATFORM_ERROR)
        usage = outcome.usage
        cost = cost_of(agent.pricing, MeteredUsage(usage.wall_ms, usage.cpu_ms, usage.peak_memory_bytes,
                                                   record.limits.memory_mb, len(outcome.egress or ())),
                       charged=charged)
        async with self.db.acquire() as conn, conn.transaction():
            digest = egress_digest(outcome.egress) if outcome.egress is not None else None
            finished = await execution_sql.finish(conn, record.id, outcome, cost, from_status=from_status,
                                                  worker=worker, egress_digest=digest)
            if finished is None:
                return None
            final, stdin = finished
            receipt = await self.issuer.issue(conn, final, agent, stdin=stdin or b"", stdout=outcome.raw_output)
            if not charged:
                await entitlement_sql.give_back(conn, final.id)
            queued = await self._queue_webhook(conn, final, receipt)
            faults.point("before_commit")
        if queued and self.on_webhook is not None:
            self.on_webhook()
        self.metrics.receipt_issued()
        _observe(self.metrics, final)
        return final

    async def _queue_webhook(self, conn: asyncpg.Connection, final: ExecutionRecord, receipt: StoredReceipt) -> bool:
        """To the execution's own webhook_url (signed with its submitter's secret), else to its
        service's configured endpoint; nothing when neither exists."""
        if final.webhook_url:
            signer = final.submitted_by or final.owner
            await webhook_sql.ensure_endpoint(conn, signer, signing.new_secret())
            url = final.webhook_url
        elif final.service is not None:
            endpoint = await webhook_sql.get_endpoint(conn, final.service)
            if endpoint is None or endpoint.url is None:
                return False
            signer, url = final.service, endpoint.url
        else:
            return False
        await webhook_sql.enqueue(conn, execution_id=final.id, event_type=event_type(final), url=url,
                                  endpoint_owner=signer, payload=webhook_payload(final, receipt),
                                  new_secret=signing.new_secret())
        return True


def event_type(record: ExecutionRecord) -> str:
    return f"execution.{record.status.value.lower()}"


def webhook_payload(record: ExecutionRecord, receipt: StoredReceipt) -> bytes:
    """The Standard Webhooks body: the final record and its signed receipt. The receipt's
    inclusion proof is fetched later (GET …/receipt): the head covering it may not exist yet."""
    envelope = dsse.Envelope(dsse.RECEIPT_PAYLOAD_TYPE, receipt.payload, (dsse.Signature(receipt.keyid, receipt.sig),))
    return signing.message(event_type(record), {"execution": record.to_dict(),
                                                "receipt": {"envelope": envelope.to_json(),
                                                            "log_index": receipt.log_index}},
                           datetime.now(UTC))


def _observe(metrics: Metrics, final: ExecutionRecord) -> None:
    error = final.error.type.value if final.error else None
    metrics.execution_finished(
        final.status.value, error,
        final.usage.wall_ms / 1000 if final.usage.wall_ms is not None else None,
        (final.started_at - final.created_at).total_seconds() if final.started_at else None)
    log.info("execution %s: %s%s (start %d)", final.id, final.status.value, f" ({error})" if error else "",
             final.attempts)
