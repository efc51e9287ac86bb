"""Every answer checked against the contract, when EXECUTOR_CHECK_RESPONSES is on (the test suite
and drills turn it on; production leaves it off). The request side is enforced by validation.py;
this is its mirror for what the service answers: a documented status, the documented media type,
a body that fits the documented schema, a problem type the operation lists. A mismatch does not
change the answer: it is logged at ERROR as "contract violation: ..." so that a test harness
reading the log (tests/conftest.py) fails the run that produced it.

Streamed answers (Server-Sent Events) are checked by status and media type only: their body is
not in hand when the headers go out."""

from __future__ import annotations

import asyncio
import json
import logging
from functools import cache
from typing import Any

from aiohttp import web

from executor.api.contract import openapi
from executor.api.contract.operation import Operation
from executor.api.problems import PROBLEM_JSON, REQUEST_ID_KEY
from executor.api.validation import OPERATION_KEY, contract_validator, route_path
from executor.errors import PROBLEM_TYPE_PREFIX

log = logging.getLogger(__name__)

# A violation's log line names the answer; its reasons are cut to this many characters.
_MAX_REASON = 300
# What a request that matched no route may be told: that there is none, or first, when it
# carries no valid token, that it must authenticate (routes are not disclosed to strangers).
_NO_ROUTE_PROBLEMS = ("not_found", "method_not_allowed", "unauthenticated")


def install(app: web.Application) -> None:
    """Check every answer of `app` (an on_response_prepare signal: it sees problems too)."""
    app.on_response_prepare.append(_check_response)


async def _check_response(request: web.Request, response: web.StreamResponse) -> None:
    body = response.body if isinstance(response, web.Response) else None
    if request.method == "HEAD" or not isinstance(body, bytes | bytearray | None):
        body = None
    operation = request.get(OPERATION_KEY) or _operation_of(request)
    media = (response.content_type or "").lower()
    # Validating a large body is CPU work: off the event loop.
    reasons = await asyncio.to_thread(
        violations, operation, response.status, media, bytes(body) if body is not None else None,
        streamed=not isinstance(response, web.Response))
    if reasons:
        where = f"{request.method} {route_path(request) or request.path} -> {response.status}"
        # After the middlewares (the request's id is no longer bound): named here.
        log.error("contract violation: %s: %s", where, "; ".join(reasons)[:_MAX_REASON * 3],
                  extra={"request_id": request.get(REQUEST_ID_KEY)})


def _operation_of(request: web.Request) -> Operation | None:
    """The operation a request matched, found again when the answer came before validation ran
    (a problem raised by the authentication middleware, say)."""
    path = route_path(request)
    method = "GET" if request.method == "HEAD" else request.method
    for op in openapi.operations():
        if (op.method, op.path) == (method, path):
            return op
    return None


def violations(operation: Operation | None, status: int, media: str, body: bytes | None, *,
               streamed: bool = False) -> list[str]:
    """Why an answer does not fit the contract; empty when it does. Pure: unit-tested."""
    replies = {reply.status: reply for reply in operation.replies} if operation is not None else {}
    if media == PROBLEM_JSON or (status >= 400 and status not in replies):  # readiness documents its 503
        return _problem_violations(operation, status, media, body)
    if operation is None:
        return [f"a {status} answer to a request that matched no operation"]
    reply = replies.get(status)
    if reply is None:
        return [f"status {status} is not documented (documented: {sorted(replies)})"]
    if reply.schema is None:
        return [f"a {status} answer carries a body"] if body else []
    documented = reply.media.split(";")[0].strip().lower()
    if media != documented:
        return [f"media type {media!r}, documented {documented!r}"]
    if streamed or body is None or documented != "application/json":
        return []
    try:
        document = json.loads(body)
    except ValueError:
        return ["the body is not JSON"]
    return _schema_violations(json.dumps(reply.schema, sort_keys=True), document)


def _problem_violations(operation: Operation | None, status: int, media: str, body: bytes | None) -> list[str]:
    if media != PROBLEM_JSON:
        return [f"a {status} answer as {media!r}, not {PROBLEM_JSON}"]
    try:
        problem = json.loads(body or b"")
    except ValueError:
        return ["a problem whose body is not JSON"]
    reasons = _schema_violations(json.dumps({"$ref": "#/components/schemas/Problem"}), problem)
    if reasons:
        return reasons
    slug = str(problem.get("type", "")).removeprefix(PROBLEM_TYPE_PREFIX)
    statuses = openapi.problem_statuses()
    if slug not in statuses:
        return [f"problem type {slug!r} is not in the contract"]
    if statuses[slug] != status or problem.get("status") != status:
        return [f"problem {slug!r} answered with {status}, documented {statuses[slug]}"]
    if operation is None:  # no route: routing's own problems, or a missing token (checked before routing)
        return [] if slug in _NO_ROUTE_PROBLEMS else [f"problem {slug!r} on no route"]
    listed = openapi.problem_slugs(operation)
    return [] if slug in listed else [f"problem {slug!r} is not listed for {operation.operation_id}: {listed}"]


def _schema_violations(schema_json: str, document: Any) -> list[str]:
    errors = _validator(schema_json).iter_errors(document)
    return [f"{'/' + '/'.join(map(str, error.absolute_path))}: {error.message[:_MAX_REASON]}"
            for error in list(errors)[:5]]


@cache
def _validator(schema_json: str) -> Any:
    return contract_validator(json.loads(schema_json))
