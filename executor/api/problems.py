"""Every error leaves the API as RFC 9457 application/problem+json."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from executor.errors import PROBLEM_TYPE_PREFIX, Problem, RequestInvalid, Throttled

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# aiohttp's own HTTP errors (routing, body size) under stable slugs.
_HTTP_SLUGS = {
    400: "malformed_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=problem.status,
        body=json.dumps(problem.to_dict()).encode(),
        content_type=PROBLEM_JSON,
        headers=headers,
    )


def _from_http(exc: web.HTTPException) -> web.Response:
    slug = _HTTP_SLUGS.get(exc.status, "http_error")
    body = {"type": PROBLEM_TYPE_PREFIX + slug, "title": exc.reason, "status": exc.status, "detail": exc.text or exc.reason}
    if exc.status == 413:
        body["detail"] = "the request body is larger than the configured maximum"
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return web.Response(status=exc.status, body=json.dumps(body).encode(), content_type=PROBLEM_JSON, headers=headers)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
        if isinstance(problem, Throttled):
            headers = {**problem.headers, "Retry-After": str(max(1, math.ceil(problem.retry_after_s)))}
        return problem_response(problem, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http(exc)
    except asyncpg.DataError as exc:
        # A value the request carried that PostgreSQL refuses (out of a column's range, a
        # character it cannot hold): the request's fault, though a check upstream missed it.
        log.warning("a request value refused by PostgreSQL on %s %s: %s", request.method, request.path, exc,
                    exc_info=True)
        return problem_response(RequestInvalid(f"a value in the request cannot be used: {type(exc).__name__}"))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(Problem("an internal error occurred; it has been logged"))
