"""The aiohttp application: middlewares, routes, health."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from executor.api import (
    agents,
    entitlements,
    events,
    executions,
    images,
    observe,
    receipts,
    webhooks,
)
from executor.api.auth import auth_middleware
from executor.api.bodies import json_response
from executor.api.problems import problem_middleware

if TYPE_CHECKING:
    from executor.service import Services

health = web.RouteTableDef()


@health.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@health.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when every dependency answers; says which one does not."""
    checks = await request.app["services"].check_dependencies()
    ready = all(ok for ok in checks.values())
    return json_response(
        {"status": "ready" if ready else "unavailable", "checks": {k: "ok" if v else "down" for k, v in checks.items()}},
        status=200 if ready else 503,
    )


# Every route table of the API, besides health and observe (which a worker serves too).
API_ROUTES = (executions.routes, events.routes, agents.routes, images.routes, receipts.routes,
              entitlements.routes, webhooks.routes)


def make_app(services: Services, *, api: bool = True) -> web.Application:
    """The whole API; with api=False only health, readiness, status and metrics (a worker's)."""
    app = web.Application(
        # The largest body any route takes; each route enforces its own cap (bodies.read_capped).
        client_max_size=max(services.settings.max_body_bytes, services.settings.max_module_bytes) + 1,
        middlewares=[problem_middleware, auth_middleware],
    )
    app["services"] = services
    app.add_routes(health)
    app.add_routes(observe.routes)
    if not api:
        return app
    for table in API_ROUTES:
        app.add_routes(table)
    return app

