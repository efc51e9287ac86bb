"""The MCP endpoint: the SDK's low-level Server, served by its Streamable HTTP session manager
as a Starlette app, on a uvicorn listener of its own in this process's event loop (docs/mcp.md
says why: the SDK is ASGI and aiohttp is not).

    POST/GET/DELETE /mcp                              the Streamable HTTP transport (bearer token)
    GET /.well-known/oauth-protected-resource[/mcp]   RFC 9728 metadata: where the 401 points
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
from collections.abc import Iterator
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend, RequireAuthMiddleware
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from executor.agents.service import Agents
from executor.entitlements.service import Entitlements
from executor.executions.service import Executions
from executor.mcp.auth import (
    MCP_PATH,
    METADATA_PATH,
    TokenVerifier,
    metadata_url,
    principal_of,
    protected_resource_metadata,
    session_id_of,
)
from executor.mcp.calls import CallIdentity, ToolCalls, explicit_key
from executor.mcp.changes import Listed, Sessions
from executor.mcp.tools import Catalog, identities
from executor.queue.events import Events
from executor.records.principals import Principal
from executor.settings import Settings
from executor.tokens import Tokens

log = logging.getLogger(__name__)

INVALID_PARAMS = -32602
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _RequestProgress:
    """notifications/progress on the stream of the request that asked, with its token."""

    def __init__(self, ctx: ServerRequestContext[Any, Any], token: str | int) -> None:
        self.ctx = ctx
        self.token = token

    async def report(self, elapsed_s: float, message: str) -> None:
        await self.ctx.session.send_progress_notification(
            self.token, round(elapsed_s, 3), message=message, related_request_id=str(self.ctx.request_id))


class McpEndpoint:
    """The handlers of tools/list and tools/call over the domain services, and its listener."""

    def __init__(self, settings: Settings, *, tokens: Tokens, agents: Agents, entitlements: Entitlements,
                 executions: Executions, events: Events) -> None:
        self.settings = settings
        self.catalog = Catalog(agents, entitlements)
        self.calls = ToolCalls(executions, settings.resolved_public_url)
        self.sessions = Sessions(self._listed)
        events.on_tools_changed(self.sessions.changed)
        self.verifier = TokenVerifier(tokens)
        self.base_url = f"http://{'[' + settings.host + ']' if ':' in settings.host else settings.host}:" \
                        f"{settings.mcp_port}"
        self.server = _Server("executor", version=_version(),
                              instructions="Marketplace agents as tools: each call runs the agent in a sandbox "
                                           "and comes with a signed receipt.",
                              on_list_tools=self.list_tools, on_call_tool=self.call_tool)
        self._uvicorn: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def _listed(self, principal: Principal) -> Listed:
        return identities(await self.catalog.tools_for(principal))

    def _principal(self, ctx: ServerRequestContext[Any, Any]) -> Principal:
        principal = principal_of(ctx)
        session_id = session_id_of(ctx)
        if session_id is not None and not self.sessions.bind(session_id, principal):
            raise MCPError(code=INVALID_PARAMS, message="this session belongs to another principal")
        return principal

    async def list_tools(self, ctx: ServerRequestContext[Any, Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        principal = self._principal(ctx)
        tools = await self.catalog.tools_for(principal)
        session_id = session_id_of(ctx)
        if session_id is not None:
            self._watch(ctx, session_id, principal, identities(tools))
        return types.ListToolsResult(tools=[tool.to_tool() for tool in tools.values()])

    def _watch(self, ctx: ServerRequestContext[Any, Any], session_id: str, principal: Principal,
               listed: Listed) -> None:
        # The session's connection: its standalone stream carries list_changed, its exit stack
        # forgets the session when it ends. The SDK has no public accessor for it yet.
        connection = getattr(ctx.session, "_connection", None)
        if connection is None:
            return
        if not self.sessions.watching(session_id):
            connection.exit_stack.callback(self.sessions.forget, session_id)
        self.sessions.watch(session_id, principal, listed, connection.send_tool_list_changed)

    async def call_tool(self, ctx: ServerRequestContext[Any, Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        principal = self._principal(ctx)
        tool = await self.catalog.resolve(principal, params.name)
        if tool is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        meta = dict(params.meta or {})
        identity = CallIdentity(explicit_key(meta), session_id_of(ctx), ctx.request_id)
        token = meta.get("progress_token", meta.get("progressToken"))  # the SDK gives the TypedDict key
        progress = _RequestProgress(ctx, token) if isinstance(token, str | int) else None
        return await self.calls.call(principal, tool, dict(params.arguments or {}), identity, progress)

    def asgi_app(self) -> Starlette:
        loopback = self.settings.host in _LOOPBACK
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        ) if loopback else None
        manager = StreamableHTTPSessionManager(app=self.server, security_settings=security)
        transport = RequireAuthMiddleware(StreamableHTTPASGIApp(manager), [], AnyHttpUrl(metadata_url(self.base_url)))

        async def metadata(request: Request) -> Response:
            return protected_resource_metadata(self.base_url)

        return Starlette(
            routes=[Route(MCP_PATH, endpoint=transport), Route(METADATA_PATH, metadata),
                    Route(METADATA_PATH + MCP_PATH, metadata)],
            middleware=[Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(self.verifier))],
            lifespan=lambda app: manager.run(),
        )

    async def start(self) -> None:
        """Listen on EXECUTOR_HOST:EXECUTOR_MCP_PORT; returns once it does (raises if it cannot)."""
        config = uvicorn.Config(self.asgi_app(), host=self.settings.host, port=self.settings.mcp_port,
                                lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=2)
        self._uvicorn = _Listener(config)
        self._task = asyncio.create_task(self._uvicorn.serve(), name="mcp-listener")
        while not self._uvicorn.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise OSError(f"the MCP listener did not start on port {self.settings.mcp_port}")
            await asyncio.sleep(0.02)
        self.sessions.start()
        log.info("MCP endpoint on %s%s", self.base_url, MCP_PATH)

    async def stop(self) -> None:
        await self.sessions.stop()
        if self._uvicorn is not None and self._task is not None:
            self._uvicorn.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class _Listener(uvicorn.Server):
    """uvicorn in a process that handles its own signals (executor/cli/server.py): it installs none."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Server(Server[Any]):
    """The SDK's server, announcing `tools.listChanged` in every initialize result (the session
    manager asks the server for its options with none of its own)."""

    def create_initialization_options(self, notification_options: NotificationOptions | None = None,
                                      experimental_capabilities: dict[str, dict[str, Any]] | None = None,
                                      extensions: dict[str, dict[str, Any]] | None = None) -> InitializationOptions:
        return super().create_initialization_options(notification_options or NotificationOptions(tools_changed=True),
                                                     experimental_capabilities, extensions)


def _version() -> str:
    try:
        return importlib.metadata.version("executor")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"
