"""HTTP route for batches of submissions (docs/batches.md)."""

from __future__ import annotations

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response, read_json
from executor.api.executions import checked_wait_s
from executor.api.keys import EXECUTIONS
from executor.executions.batch import BatchSubmission

routes = web.RouteTableDef()


@routes.post("/v1/executions/batch")
async def submit_batch(request: web.Request) -> web.Response:
    """200 with one answer per item: each item's status is the one it would have had alone."""
    executions = request.app[EXECUTIONS]
    wait_s = checked_wait_s(request, executions)  # the bounds of POST /v1/executions?wait=
    body = await read_json(request)  # checked against the contract's SubmitBatch
    answers = await BatchSubmission(executions, principal(request)).submit(body["items"], wait_s=wait_s)
    return json_response({"items": [answer.to_dict() for answer in answers]})
