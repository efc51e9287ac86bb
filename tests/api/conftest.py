"""Services and helpers for the marketplace tests: a service tuned for load (high rate
limits, webhooks to localhost allowed, fast retries) and a webhook receiver."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from executor.embedded import free_port
from tests.conftest import Api, ServiceProcess


@pytest.fixture
async def market(market_service: ServiceProcess) -> Any:
    """An operator's client of the marketplace service."""
    async with aiohttp.ClientSession() as session:
        yield Api(session, market_service.base_url, market_service.operator_token)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint on localhost that answers `status` (settable) and keeps what it got."""

    port: int = field(default_factory=free_port)
    status: int = 204
    received: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read()))
        self._arrived.set()
        return web.Response(status=self.status)

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.received


@pytest.fixture
async def receiver() -> Any:
    hook = Receiver()
    await hook.start()
    yield hook
    await hook.stop()


async def final_record(api: Api, execution_id: str) -> dict[str, Any] | None:
    """The record once final (a 5 s long-poll), else None: a predicate for wait_for."""
    status, record, _ = await api.get(f"/v1/executions/{execution_id}?wait=5")
    return record if status == 200 and record["status"] not in ("PENDING", "RUNNING") else None


async def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll an async predicate until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            value = await predicate()
            if value:
                return value
            await asyncio.sleep(interval)
