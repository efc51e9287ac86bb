"""`Server-Timing` on every answer, when EXECUTOR_SERVER_TIMING is on (docs/benchmarks.md): a
timeline per request (executor/observability/timing.py) that the code on its path marks, the
worker's marks merged in when it ran the request's execution (POST /v1/executions?wait=)."""

from __future__ import annotations

from aiohttp import web

from executor.api.problems import Handler
from executor.observability import timing


@web.middleware
async def server_timing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    with timing.timeline("received") as marks:
        response = await handler(request)
        timing.mark("answered")
    if not response.prepared:  # a stream already sent its headers
        response.headers["Server-Timing"] = timing.server_timing(marks)
    return response
