"""tools/call: one execution, run exactly as POST /v1/executions?wait=N runs it.

Executions.submit does admission (rate limits, queue bounds, the entitlement use, the input
schema, limits, the per-user cap, the Idempotency-Key), then Executions.wait_final waits up to
EXECUTOR_MAX_WAIT_S for the end. Whatever refuses or ends the call badly comes back as a tool
result with `isError: true` naming the problem type, never as a JSON-RPC error: an unknown
tool name is the one protocol error.

Idempotency (docs/mcp.md): the key is `_meta["executor/idempotency_key"]` when the host sends
one (the same key space as the HTTP Idempotency-Key of the caller); else, on a session, it is
derived from the request's identity, "mcp:<session id>:<JSON-RPC id>", so a host that sends
the same request again on its session gets the same execution, run and charged once.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

import mcp_types as types

from executor.errors import InputInvalid, Problem
from executor.executions.admission import MAX_IDEMPOTENCY_KEY
from executor.executions.service import Executions
from executor.mcp.tools import WRAPPED_INPUT, AgentTool
from executor.records.executions import ExecutionRecord, Status
from executor.records.principals import Principal

IDEMPOTENCY_META = "executor/idempotency_key"
META_EXECUTION = "executor/execution_id"
META_STATUS = "executor/status"
META_COST = "executor/cost"
META_RECEIPT = "executor/receipt_url"
META_PROBLEM = "executor/problem"
META_REPLAYED = "executor/replayed"
PROGRESS_EVERY_S = 1.0
NOT_FINAL = "execution_not_final"  # the wait ended before the execution did (MCP only: docs/mcp.md)


@dataclass(frozen=True)
class CallIdentity:
    """What identifies one tools/call for idempotency: the host's key, or its session and id."""

    explicit_key: str | None
    session_id: str | None
    request_id: str | int | None

    @property
    def key(self) -> str | None:
        if self.explicit_key is not None:
            return self.explicit_key
        if self.session_id is None or self.request_id is None:
            return None  # no session (2026-07-28 single requests): only an explicit key dedups
        derived = f"mcp:{self.session_id}:{json.dumps(self.request_id)}"
        if len(derived) > MAX_IDEMPOTENCY_KEY:
            derived = "mcp:sha256:" + hashlib.sha256(derived.encode()).hexdigest()
        return derived


def explicit_key(meta: Any) -> str | None:
    value = meta.get(IDEMPOTENCY_META) if isinstance(meta, dict) else None
    return value if isinstance(value, str) else None


class Progress(Protocol):
    """Reports the wait to a host that asked for it (a progressToken)."""

    async def report(self, elapsed_s: float, message: str) -> None: ...


class ToolCalls:
    def __init__(self, executions: Executions, api_base_url: str) -> None:
        self.executions = executions
        self.api_base_url = api_base_url.rstrip("/")

    async def call(self, principal: Principal, tool: AgentTool, arguments: dict[str, Any],
                   identity: CallIdentity, progress: Progress | None) -> types.CallToolResult:
        if tool.wrapped and WRAPPED_INPUT not in arguments:
            return problem_result(InputInvalid("1 violation(s) of the agent's input schema", errors=[
                {"pointer": "/" + WRAPPED_INPUT, "detail": "required: this agent's input is the `input` argument"}]))
        body = {"agent_id": str(tool.agent.agent_id), "input": tool.input_of(arguments)}
        try:
            submission = await self.executions.submit(principal, body, idempotency_key=identity.key, watch=True)
            record = await self._wait(submission.record, submission.watch, progress)
        except Problem as problem:
            return problem_result(problem)
        return self.render(tool, record, replayed=submission.replayed)

    async def _wait(self, record: ExecutionRecord, watch: Any, progress: Progress | None) -> ExecutionRecord:
        total = self.executions.settings.max_wait_s
        if progress is None:
            return await self.executions.wait_final(record, total, watch=watch)
        started = time.monotonic()
        while True:
            remaining = total - (time.monotonic() - started)
            record = await self.executions.wait_final(record, min(PROGRESS_EVERY_S, max(remaining, 0.0)),
                                                      watch=watch)
            watch = None  # spent by the first wait
            if record.status.is_final or remaining <= PROGRESS_EVERY_S:
                return record
            await progress.report(time.monotonic() - started, f"execution {record.id}: {record.status.value}")

    def render(self, tool: AgentTool, record: ExecutionRecord, *, replayed: bool) -> types.CallToolResult:
        shown = record.to_dict()
        meta: dict[str, Any] = {
            META_EXECUTION: str(record.id), META_STATUS: record.status.value, META_COST: shown.get("cost"),
            META_RECEIPT: f"{self.api_base_url}/v1/executions/{record.id}/receipt", META_REPLAYED: replayed,
        }
        if record.status is Status.COMPLETED:
            structured = record.output if tool.structured and isinstance(record.output, dict) else None
            return types.CallToolResult(content=[text(record.output)], structured_content=structured, _meta=meta)
        if not record.status.is_final:
            meta[META_PROBLEM] = NOT_FINAL
            detail = (f"{NOT_FINAL}: execution {record.id} is still {record.status.value} after "
                      f"{self.executions.settings.max_wait_s:g} s; its record: {self.api_base_url}/v1/executions/"
                      f"{record.id}?wait=60")
            return types.CallToolResult(content=[types.TextContent(text=detail)], is_error=True, _meta=meta)
        error = record.error.to_dict() if record.error else {"type": record.status.value.lower(), "detail": ""}
        meta[META_PROBLEM] = error["type"]
        detail = f"{error['type']}: the execution ended {record.status.value}: {error['detail']}"
        if error.get("violations"):
            detail += "\n" + json.dumps(error["violations"], ensure_ascii=False)
        return types.CallToolResult(content=[types.TextContent(text=detail)], is_error=True, _meta=meta)


def text(value: Any) -> types.TextContent:
    return types.TextContent(text=json.dumps(value, ensure_ascii=False, sort_keys=True))


def problem_result(problem: Problem) -> types.CallToolResult:
    """A refusal as a tool result: its problem type and detail, and the violations of an input."""
    detail = f"{problem.slug}: {problem.detail}"
    if problem.errors:
        detail += "\n" + json.dumps(problem.errors, ensure_ascii=False)
    meta: dict[str, Any] = {META_PROBLEM: problem.slug, "executor/problem_type": problem.type}
    if problem.errors:
        meta["executor/errors"] = problem.errors
    return types.CallToolResult(content=[types.TextContent(text=detail)], is_error=True, _meta=meta)
