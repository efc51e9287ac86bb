"""Issuing a receipt: sign the statement of a final execution and append it to the log,
inside the transaction that finishes the execution (no final state without its receipt)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from executor.receipts import dsse, log
from executor.receipts.canonical import canonical_json
from executor.receipts.keys import Signer
from executor.receipts.statement import receipt_statement
from executor.records.agents import AgentVersion
from executor.records.executions import ExecutionRecord
from executor.storage import receipts as receipt_sql


class ReceiptIssuer:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    async def issue(self, conn: asyncpg.Connection, record: ExecutionRecord, agent: AgentVersion, *,
                    stdin: bytes, stdout: bytes | None) -> receipt_sql.StoredReceipt:
        """Sign and log the receipt of `record` (final, in this transaction)."""
        await self.signer.refresh(conn)  # after `executor keys rotate` the new key signs from here on
        key = self.signer.current
        # From here to the commit the log's state row is locked: keep this stretch short.
        reserved = await log.reserve(conn)
        index = reserved.size
        statement = receipt_statement(record, agent, stdin=stdin, stdout=stdout, log_id=str(reserved.log_id),
                                      log_index=index, key_id=key.kid, issued_at=datetime.now(UTC))
        payload = canonical_json(statement)
        signature = dsse.sign(dsse.RECEIPT_PAYLOAD_TYPE, payload, key.key, key.kid)
        frontier, nodes = log.extend(reserved, payload)
        stored = receipt_sql.StoredReceipt(record.id, index, payload, key.kid, signature.sig)
        await receipt_sql.insert_receipt(conn, stored, nodes, frontier)
        return stored
