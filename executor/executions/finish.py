"""Writing the end of an execution: its final state, cost and receipt, in one transaction.

Every path to a final state goes through here (the worker, a cancel before the
start, a job the queue refused, a worker that restarted mid-run), so no execution
is ever final without its receipt.
"""

from __future__ import annotations

import asyncpg

from executor.agents.records import AgentVersion
from executor.executions.records import ErrorType, ExecutionRecord, Outcome, Status
from executor.pricing import MeteredUsage, cost_of
from executor.receipts.issuer import ReceiptIssuer
from executor.storage import agents as agent_sql
from executor.storage import executions as execution_sql


class Finisher:
    def __init__(self, db: asyncpg.Pool, issuer: ReceiptIssuer) -> None:
        self.db = db
        self.issuer = issuer

    async def finish(self, record: ExecutionRecord, outcome: Outcome, *, from_status: Status,
                     agent: AgentVersion | None = None) -> ExecutionRecord | None:
        """`record` (in `from_status`) → `outcome`; None when it had left `from_status` meanwhile
        (a final state stays final: then nothing is written)."""
        if agent is None:
            agent = await agent_sql.get_version(self.db, record.agent_id, record.agent_version)
            assert agent is not None, "an execution's agent version is never deleted"
        # The platform's failures and tasks that never ran are not charged.
        charged = outcome.raw_output is not None and not (
            outcome.error is not None and outcome.error.type is ErrorType.PLATFORM_ERROR)
        usage = outcome.usage
        cost = cost_of(agent.pricing, MeteredUsage(usage.wall_ms, usage.cpu_ms, usage.peak_memory_bytes,
                                                   record.limits.memory_mb), charged=charged)
        async with self.db.acquire() as conn, conn.transaction():
            finished = await execution_sql.finish(conn, record.id, outcome, cost, from_status=from_status)
            if finished is None:
                return None
            final, stdin = finished
            await self.issuer.issue(conn, final, agent, stdin=stdin or b"", stdout=outcome.raw_output)
        return final
