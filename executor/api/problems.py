"""Every error leaves the API as RFC 9457 application/problem+json, its `instance` naming the
request it answers: `urn:executor:request:<request id>` (the id in X-Request-Id, access.py)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from executor.errors import PROBLEM_TYPE_PREFIX, Problem, RequestInvalid, Throttled
from executor.observability.logs import bind_request, current_request, new_request_id

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_KEY = "request_id"  # the request's id, on the request (access.py), as auth.py keeps the principal
INSTANCE_PREFIX = "urn:executor:request:"

# aiohttp's own HTTP errors (routing, body size) under stable slugs.
_HTTP_SLUGS = {
    400: "malformed_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _body(problem: dict[str, Any], request_id: str | None) -> bytes:
    """The document, with the request it answers as its `instance` when there is one (the
    request bound for the logs: this runs inside access.request_id_middleware)."""
    if request_id is not None:
        problem = {**problem, "instance": INSTANCE_PREFIX + request_id}
    return json.dumps(problem).encode()


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=problem.status,
        body=_body(problem.to_dict(), current_request()),
        content_type=PROBLEM_JSON,
        headers=headers,
    )


def _from_http(exc: web.HTTPException) -> web.Response:
    slug = _HTTP_SLUGS.get(exc.status, "http_error")
    body = {"type": PROBLEM_TYPE_PREFIX + slug, "title": exc.reason, "status": exc.status,
            "detail": exc.text or exc.reason}
    if exc.status == 413:
        body["detail"] = "the request body is larger than the configured maximum"
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return web.Response(status=exc.status, body=_body(body, current_request()), content_type=PROBLEM_JSON,
                        headers=headers)


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


class _ProblemRequestHandler(RequestHandler):
    """aiohttp answers a request its HTTP parser refuses (a header holding a NUL byte, a body
    in a Content-Encoding it cannot undo, broken chunking) before any route or middleware
    sees it, in text/plain; this answers the same status as a problem, with a request id of its
    own when no middleware gave it one (the caller's X-Request-Id is not read then)."""

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        request_id = request.get(REQUEST_ID_KEY) or new_request_id()
        with bind_request(request_id):
            super().handle_error(request, status, exc, message)  # logs it; raises if a response began
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:  # a status the standard library does not name
            phrase = "Error"
        slug = _HTTP_SLUGS.get(status, "internal_error" if status >= 500 else "http_error")
        detail = phrase if status >= 500 else (message or phrase).splitlines()[0]
        body = {"type": PROBLEM_TYPE_PREFIX + slug, "title": phrase, "status": status, "detail": detail}
        response = web.Response(status=status, body=_body(body, request_id), content_type=PROBLEM_JSON,
                                headers={REQUEST_ID_HEADER: request_id})
        response.force_close()
        return response


class _ProblemServer(Server):
    def __call__(self) -> RequestHandler:
        return _ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


def problems_below_routing(runner: web.BaseRunner) -> None:
    """After `runner.setup()`: the protocol layer's own errors are problems too."""
    server: Any = runner.server
    assert isinstance(server, Server), "runner.setup() makes the server"
    server.__class__ = _ProblemServer
