"""Operators' view of a running instance: Prometheus metrics and a JSON status."""

from __future__ import annotations

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response
from executor.tokens import Role

routes = web.RouteTableDef()

# name, Prometheus type, help, key in the pool snapshot
_POOL_METRICS = (
    ("executor_pool_containers", "gauge", "Pre-started containers ready to be claimed.", "containers"),
    ("executor_pool_starting", "gauge", "Pre-started containers being started.", "starting"),
    ("executor_pool_closed_shelves", "gauge",
     "Agents kept to cold starts: their unclaimed containers used CPU before any input.", "closed_shelves"),
    ("executor_pool_hits_total", "counter", "Tasks that got a pre-started container.", "hits"),
    ("executor_pool_misses_total", "counter", "Tasks that found the pool empty and started cold.", "misses"),
    ("executor_pool_discarded_total", "counter", "Pre-started containers removed unused (dead or idle).",
     "discarded"),
    ("executor_pool_refill_seconds_sum", "counter", "Seconds spent starting pre-started containers.",
     "refill_seconds_total"),
    ("executor_pool_refill_seconds_count", "counter", "Pre-started containers started.", "refills"),
)


@routes.get("/v1/status")
async def status(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    return json_response(request.app["services"].status())


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    current = request.app["services"].status()
    lines = [
        "# HELP executor_worker_running_tasks Tasks this worker runs now.",
        "# TYPE executor_worker_running_tasks gauge",
        f"executor_worker_running_tasks {current['worker']['running']}",
    ]
    pool = current["pool"]
    for name, kind, help_text, key in _POOL_METRICS:
        if pool is not None:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {pool[key]}"]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
