"""Operators' view of a running instance: Prometheus metrics and a JSON status."""

from __future__ import annotations

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response
from executor.api.keys import EXECUTIONS, INSTANCE
from executor.executions.service import Executions
from executor.observability.metrics import METRICS, header, sample
from executor.records.principals import Role

routes = web.RouteTableDef()
CONTENT_TYPE = "text/plain; version=0.0.4"  # Prometheus text exposition format

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
    return json_response(request.app[INSTANCE].status())


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; Prometheus sends the operator token as its bearer token."""
    principal(request, Role.OPERATOR)
    current = request.app[INSTANCE].status()
    lines = header("executor_worker_running_tasks", "gauge", "Tasks this worker runs now.")
    lines.append(sample("executor_worker_running_tasks", {"instance": str(current["instance"])},
                        current["worker"]["running"]))
    pool = current["pool"]
    for name, kind, help_text, key in _POOL_METRICS:
        if pool is not None:
            lines += [*header(name, kind, help_text), sample(name, {}, pool[key])]
    lines += await _queue_lines(request.app[EXECUTIONS])
    lines += METRICS.render()
    return web.Response(text="\n".join(lines) + "\n", content_type=CONTENT_TYPE, charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def _queue_lines(executions: Executions) -> list[str]:
    """The job stream's depth and the age of its oldest job; nothing when Redis does not answer
    (a scrape must not fail for it: /readyz says which dependency is down)."""
    current = await executions.queue_stats()
    if current is None:
        return []
    lines = [*header("executor_queue_depth", "gauge", "Jobs accepted and not yet finished."),
             sample("executor_queue_depth", {}, current.depth),
             *header("executor_queue_oldest_job_age_seconds", "gauge",
                     "Age of the oldest job in the queue (0 when it is empty).")]
    lines.append(sample("executor_queue_oldest_job_age_seconds", {}, current.oldest_age_s or 0.0))
    return lines
