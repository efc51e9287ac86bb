"""The aiohttp application: middlewares, routes, health, and the services its handlers reach (keys.py)."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from executor.agents.service import Agents
from executor.api import (
    access,
    agents,
    batches,
    console_routes,
    entitlements,
    events,
    executions,
    http_metrics,
    images,
    observe,
    receipts,
    reference,
    response_check,
    secrets,
    tokens,
    webhooks,
)
from executor.api.auth import auth_middleware
from executor.api.bodies import json_response
from executor.api.keys import (
    AGENTS,
    ENTITLEMENTS,
    EXECUTIONS,
    IMAGES,
    INSTANCE,
    RECEIPTS,
    REPLAYS,
    SETTINGS,
    TOKENS,
    WEBHOOK_ENDPOINTS,
    Instance,
)
from executor.api.problems import problem_middleware
from executor.api.replay import replay_middleware
from executor.api.server_timing import server_timing_middleware
from executor.api.validation import CHECKED_OPERATIONS, checked_operations, validation_middleware
from executor.entitlements.service import Entitlements
from executor.executions.service import Executions
from executor.images.service import Images
from executor.receipts.service import Receipts
from executor.replays import Replays
from executor.secrets.service import Secrets
from executor.settings import Settings
from executor.tokens import Tokens
from executor.webhooks.endpoints import WebhookEndpoints


class Backend(Instance, Protocol):
    """What the API serves: the settings and every domain service, built once by the wiring
    (executor/service.py). A protocol, so that the API does not import the layer above it."""

    settings: Settings
    tokens: Tokens
    agents: Agents
    entitlements: Entitlements
    executions: Executions
    images: Images
    receipts: Receipts
    webhook_endpoints: WebhookEndpoints
    replays: Replays
    secrets: Secrets


health = web.RouteTableDef()


@health.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@health.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when every dependency answers; says which one does not."""
    checks = await request.app[INSTANCE].check_dependencies()
    ready = all(ok for ok in checks.values())
    return json_response(
        {"status": "ready" if ready else "unavailable",
         "checks": {k: "ok" if v else "down" for k, v in checks.items()}},
        status=200 if ready else 503,
    )


# Every route table of the API, besides health and observe (which a worker serves too).
API_ROUTES = (executions.routes, batches.routes, events.routes, agents.routes, tokens.routes, images.routes,
              receipts.routes, entitlements.routes, webhooks.routes, reference.routes,
              console_routes.routes, secrets.routes)


def make_app(backend: Backend, *, api: bool = True) -> web.Application:
    """The whole API; with api=False only health, readiness, status and metrics (a worker's)."""
    settings = backend.settings
    app = web.Application(
        # The largest body any route takes; each route enforces its own cap (bodies.read_capped).
        client_max_size=max(settings.max_body_bytes, settings.max_module_bytes) + 1,
        # Outermost first: the request has its id (for the logs, X-Request-Id, problems' `instance`);
        # errors become problems; the caller is known; the request matches the contract.
        # Then a creating POST's Idempotency-Key: a retry replays the first answer (replay.py).
        middlewares=[access.request_id_middleware,
                     *([server_timing_middleware] if settings.server_timing else []),
                     http_metrics.http_metrics_middleware, problem_middleware,
                     auth_middleware, validation_middleware, replay_middleware],
    )
    app[CHECKED_OPERATIONS] = checked_operations()
    access.install(app)  # X-Request-Id on every answer
    if settings.check_responses:
        response_check.install(app)
    app[SETTINGS] = settings
    app[INSTANCE] = backend
    app[TOKENS] = backend.tokens
    app[AGENTS] = backend.agents
    app[ENTITLEMENTS] = backend.entitlements
    app[EXECUTIONS] = backend.executions
    app[IMAGES] = backend.images
    app[RECEIPTS] = backend.receipts
    app[WEBHOOK_ENDPOINTS] = backend.webhook_endpoints
    app[REPLAYS] = backend.replays
    app[secrets.SECRETS] = backend.secrets
    app.add_routes(health)
    app.add_routes(observe.routes)
    if not api:
        return app
    for table in API_ROUTES:
        app.add_routes(table)
    return app

