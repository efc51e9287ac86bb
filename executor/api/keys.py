"""What the handlers call, under typed keys of the application (aiohttp AppKey): one key per
domain service, the settings, and the instance itself for readiness and status. make_app
(app.py) sets them all, so `request.app[EXECUTIONS]` is an Executions, checked by mypy."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from executor.agents.service import Agents
from executor.entitlements.service import Entitlements
from executor.executions.service import Executions
from executor.images.service import Images
from executor.receipts.service import Receipts
from executor.replays import Replays
from executor.settings import Settings
from executor.tokens import Tokens
from executor.webhooks.endpoints import WebhookEndpoints


class Instance(Protocol):
    """This process as operators see it (the wiring object in executor/service.py is one)."""

    async def check_dependencies(self) -> dict[str, bool]:
        """Whether each dependency (PostgreSQL, Redis, the engine) answers, by name."""
        ...

    def status(self) -> dict[str, Any]:
        """What it is doing: its instance id, its worker and its pool."""
        ...


SETTINGS = web.AppKey("settings", Settings)
INSTANCE = web.AppKey[Instance]("instance")
TOKENS = web.AppKey("tokens", Tokens)
AGENTS = web.AppKey("agents", Agents)
ENTITLEMENTS = web.AppKey("entitlements", Entitlements)
EXECUTIONS = web.AppKey("executions", Executions)
IMAGES = web.AppKey("images", Images)
RECEIPTS = web.AppKey("receipts", Receipts)
WEBHOOK_ENDPOINTS = web.AppKey("webhook_endpoints", WebhookEndpoints)
REPLAYS = web.AppKey("replays", Replays)
