"""A service with its MCP endpoint on (Redis db 13), and MCP clients of it: the official SDK's
Streamable HTTP client with a bearer token."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from mcp.client.session import ClientSession, MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from executor.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from tests.conftest import Api, ServiceProcess, make_service

WORDCOUNT_INPUT = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
WORDCOUNT_OUTPUT = {
    "type": "object",
    "properties": {"words": {"type": "integer"}, "lines": {"type": "integer"}, "chars": {"type": "integer"}},
    "required": ["words", "lines", "chars"],
}


@pytest.fixture(scope="module")
def mcp_service(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, images: dict[str, str]
                ) -> Iterator[ServiceProcess]:
    svc = make_service(postgres, redis_server, "mcp", redis_db="13", mcp_port=str(free_port()),
                       user_burst="1000", user_rate_per_s="1000")
    svc.start()
    yield svc
    svc.stop()


def mcp_url(svc: ServiceProcess) -> str:
    return f"http://127.0.0.1:{svc.env['EXECUTOR_MCP_PORT']}/mcp"


@pytest.fixture
async def operator(mcp_service: ServiceProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, mcp_service.base_url, mcp_service.operator_token)


@contextlib.asynccontextmanager
async def connected(svc: ServiceProcess, token: str,
                    message_handler: MessageHandlerFnT | None = None) -> AsyncIterator[ClientSession]:
    """An initialized MCP session of the token's principal."""
    async with (create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http,
                streamable_http_client(mcp_url(svc), http_client=http) as (read, write),
                ClientSession(read, write, message_handler=message_handler) as session):
        await session.initialize()
        yield session


async def register_wordcount(service: Api, images: dict[str, str], **extra: Any) -> dict[str, Any]:
    body = {"name": f"wc-{uuid.uuid4().hex[:10]}", "image": images["wordcount"], "command": None,
            "description": "Counts words.", "input_schema": WORDCOUNT_INPUT, "output_schema": WORDCOUNT_OUTPUT,
            **extra}
    status, agent, _ = await service.post("/v1/agents", json=body)
    assert status == 201, agent
    return dict(agent)
