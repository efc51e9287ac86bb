"""Operators' view of a running instance: Prometheus metrics and a JSON status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response
from executor.api.http_metrics import metrics_of
from executor.api.keys import EXECUTIONS, INSTANCE, RECEIPTS, WEBHOOK_ENDPOINTS
from executor.observability.metrics import CONTENT_TYPE, Metrics
from executor.queue.classes import merged
from executor.queue.stream import QueueStats
from executor.records.principals import Role

routes = web.RouteTableDef()


@routes.get("/v1/status")
async def status(request: web.Request) -> web.Response:
    """This instance's worker and pool, and the shared job queue as the /metrics gauges read it
    (`executor_queue_depth`, `executor_queue_oldest_job_age_seconds`); `queue` is null when
    Redis does not answer."""
    principal(request, Role.OPERATOR)
    classes = await request.app[EXECUTIONS].queue_stats_by_class()
    queue = None
    if classes is not None:
        queue = {**_queue(merged(list(classes.values()))),
                 "classes": {name: _queue(stats) for name, stats in classes.items()}}
    return json_response({**request.app[INSTANCE].status(), "queue": queue})


def _queue(stats: QueueStats) -> dict[str, Any]:
    oldest = None if stats.oldest_age_s is None else round(stats.oldest_age_s, 3)
    return {"depth": stats.depth, "oldest_age_s": oldest}


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format (0.0.4); Prometheus sends the operator token as its bearer token."""
    principal(request, Role.OPERATOR)
    registry = metrics_of(request.app) or Metrics()
    body = await registry.scrape(_Owners(request.app))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "X-Content-Type-Options": "nosniff"})


class _Owners:
    """The gauges' owners among the application's services (observability.metrics.Owners)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def status(self) -> Mapping[str, Any]:
        return self.app[INSTANCE].status()

    async def queue_stats(self) -> QueueStats | None:
        return await self.app[EXECUTIONS].queue_stats()

    async def webhooks_pending(self) -> int | None:
        return await self.app[WEBHOOK_ENDPOINTS].pending_count()

    async def log_entries(self) -> int | None:
        return await self.app[RECEIPTS].log_size()
