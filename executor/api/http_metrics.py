"""HTTP metrics: every request counted by route template, method and status, and timed
(executor_http_requests_total, executor_http_request_duration_seconds; docs/metrics.md).

The route label is aiohttp's template of the matched resource (`/v1/executions/{id}`), never
the raw path, so that ids do not make series; a request no route matched (a 404 or 405 from
routing) is `unmatched`, and a method outside the standard ones is `other`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from executor.api.access import route_template
from executor.api.keys import INSTANCE
from executor.observability.metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def metrics_of(app: web.Application) -> Metrics | None:
    """The instance's metrics (executor/service.py builds them); None for an application built
    around a stand-in without any (tests)."""
    found = getattr(app[INSTANCE], "metrics", None)
    return found if isinstance(found, Metrics) else None


def route_of(request: web.Request) -> str:
    return route_template(request) or UNMATCHED


@web.middleware
async def http_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: what it records is the status the client gets, problems included. A request
    whose client left before its answer (cancelled) is not recorded."""
    metrics = metrics_of(request.app)
    if metrics is None:
        return await handler(request)
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # what problem_middleware lets through (a redirect)
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 0
        raise
    finally:
        if status:
            method = request.method if request.method in METHODS else "other"
            metrics.http_request(route_of(request), method, status, time.monotonic() - started)
