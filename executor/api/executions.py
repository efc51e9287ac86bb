"""HTTP routes for executions."""

from __future__ import annotations

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response, read_json
from executor.api.keys import EXECUTIONS
from executor.api.validation import query
from executor.errors import RequestInvalid
from executor.executions.service import Executions
from executor.records.executions import ExecutionRecord

routes = web.RouteTableDef()
_CANCEL_WAIT_S = 10.0


def _executions(request: web.Request) -> Executions:
    return request.app[EXECUTIONS]


def checked_wait_s(request: web.Request, executions: Executions) -> float:
    """?wait=, within this deployment's EXECUTOR_MAX_WAIT_S (the contract says only: a number >= 0)."""
    wait_s: float = query(request, "wait") or 0.0
    maximum = executions.settings.max_wait_s
    if wait_s > maximum:
        raise RequestInvalid(f"wait must be between 0 and {maximum:g}",
                             errors=[{"pointer": "?wait", "detail": f"a number from 0 to {maximum:g}"}])
    return wait_s


def _location(record: ExecutionRecord) -> dict[str, str]:
    return {"Location": f"/v1/executions/{record.id}"}


@routes.post("/v1/executions")
async def submit(request: web.Request) -> web.Response:
    executions = _executions(request)
    wait_s = checked_wait_s(request, executions)
    submission = await executions.submit(principal(request), await read_json(request),
                                         idempotency_key=request.headers.get("Idempotency-Key"), watch=wait_s > 0)
    record = await executions.wait_final(submission.record, wait_s, watch=submission.watch)
    headers = {**submission.headers, **_location(record)}
    if submission.replayed:
        headers["Idempotent-Replayed"] = "true"
    # 201: created and already final; 202: accepted, follow Location.
    return json_response(record.to_dict(), status=201 if record.status.is_final else 202, headers=headers)


@routes.get("/v1/executions")
async def list_executions(request: web.Request) -> web.Response:
    records, cursor = await _executions(request).list(
        principal(request),
        status=query(request, "status"),
        agent_id=query(request, "agent_id"),
        cursor=query(request, "cursor"),
        limit=query(request, "limit"),
        user=query(request, "user"),
        created_since=query(request, "created_since"),
        created_before=query(request, "created_before"),
    )
    return json_response({"items": [r.to_dict() for r in records], "next_cursor": cursor})


@routes.get("/v1/executions/{id:(?!batch$)[^/]+}")  # /v1/executions/batch is the batch route's: 405
async def get_execution(request: web.Request) -> web.Response:
    executions = _executions(request)
    record = await executions.get(principal(request), request.match_info["id"])
    record = await executions.wait_final(record, checked_wait_s(request, executions))
    return json_response(record.to_dict())


@routes.get("/v1/executions/{id}/logs")
async def get_logs(request: web.Request) -> web.Response:
    log_bytes, _ = await _executions(request).logs(principal(request), request.match_info["id"])
    return web.Response(body=log_bytes, content_type="text/plain", charset="utf-8")


@routes.get("/v1/executions/{id}/input")
async def get_raw_input(request: web.Request) -> web.Response:
    """The exact bytes the task read on stdin (the receipt's input_sha256 is of these)."""
    stdin = await _executions(request).stdin(principal(request), request.match_info["id"])
    return web.Response(body=stdin, content_type="application/json")


@routes.get("/v1/executions/{id}/stdout")
async def get_raw_stdout(request: web.Request) -> web.Response:
    """The task's stdout as read, up to its cap (the receipt's output_sha256 is of these bytes)."""
    _, raw_output = await _executions(request).logs(principal(request), request.match_info["id"])
    return web.Response(body=raw_output, content_type="application/octet-stream")


@routes.get("/v1/executions/{id}/egress")
async def get_egress(request: web.Request) -> web.Response:
    """What the task sent through the egress gateway, as its receipt binds it."""
    return json_response(await _executions(request).egress(principal(request), request.match_info["id"]))


@routes.post("/v1/executions/{id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    executions = _executions(request)
    record = await executions.cancel(principal(request), request.match_info["id"])
    record = await executions.wait_final(record, _CANCEL_WAIT_S)
    return json_response(record.to_dict(), status=200 if record.status.is_final else 202)
