"""Marketplace agents as MCP tools, end to end: the official MCP Python client over Streamable
HTTP against a live service (engine, PostgreSQL, Redis)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import mcp_types as types

from executor.receipts.jwk import parse_key_set
from executor.receipts.verify import verify_bundle
from tests.conftest import Api, ServiceProcess
from tests.mcp.conftest import WORDCOUNT_INPUT, WORDCOUNT_OUTPUT, connected, mcp_url, register_wordcount


async def _uses(service: Api, user: str, entitlement_id: str) -> dict[str, Any]:
    status, page, _ = await service.get(f"/v1/entitlements?user={user}")
    assert status == 200, page
    (found,) = [e for e in page["items"] if e["id"] == entitlement_id]
    return dict(found)


async def test_a_user_lists_exactly_the_entitled_agents_and_calls_one_with_a_receipt(
        operator: Api, mcp_service: ServiceProcess, images: dict[str, str]) -> None:
    service = await operator.new_token("service")
    user = await operator.new_token("user")
    entitled = await register_wordcount(service, images)
    other = await register_wordcount(service, images)
    await service.grant(user.subject, entitled["id"], uses=5)

    async with connected(mcp_service, user.token) as session:
        assert session.server_capabilities is not None and session.server_capabilities.tools is not None
        assert session.server_capabilities.tools.list_changed is True
        listed = (await session.list_tools()).tools
        assert [tool.name for tool in listed] == [entitled["name"]]
        (tool,) = listed
        assert tool.input_schema == WORDCOUNT_INPUT and tool.output_schema == WORDCOUNT_OUTPUT
        assert tool.annotations is not None and tool.annotations.read_only_hint is False
        assert tool.annotations.open_world_hint is False  # no egress
        assert tool.meta == {"executor/agent_id": entitled["id"], "executor/version": 1}
        assert other["name"] not in {t.name for t in listed}

        result = await session.call_tool(entitled["name"], {"text": "one two three"})
    assert not result.is_error, result
    assert result.meta is not None
    execution_id = result.meta["executor/execution_id"]
    record = await user.execution(execution_id)
    assert record["status"] == "COMPLETED" and result.meta["executor/status"] == "COMPLETED"
    assert result.structured_content == record["output"] and record["output"]["words"] == 3
    (block,) = result.content
    assert isinstance(block, types.TextContent) and json.loads(block.text) == record["output"]
    assert result.meta["executor/receipt_url"] == f"{mcp_service.base_url}/v1/executions/{execution_id}/receipt"

    status, bundle, _ = await user.get(f"/v1/executions/{execution_id}/receipt")
    assert status == 200, bundle
    status, jwks, _ = await user.as_token(None).get("/v1/keys")
    assert status == 200 and verify_bundle(bundle, parse_key_set(jwks)).valid


async def test_operators_and_services_list_agents_by_role(operator: Api, mcp_service: ServiceProcess,
                                                          images: dict[str, str]) -> None:
    service = await operator.new_token("service")
    other_service = await operator.new_token("service")
    own = await register_wordcount(service, images)
    theirs = await register_wordcount(other_service, images)
    async with connected(mcp_service, service.token) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
    assert own["name"] in names and theirs["name"] not in names
    async with connected(mcp_service, operator.token) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
    assert {own["name"], theirs["name"]} <= names


async def test_missing_and_used_up_entitlements_and_bad_arguments_are_tool_errors(
        operator: Api, mcp_service: ServiceProcess, images: dict[str, str]) -> None:
    service = await operator.new_token("service")
    user = await operator.new_token("user")
    agent = await register_wordcount(service, images)
    async with connected(mcp_service, user.token) as session:
        assert agent["name"] not in {tool.name for tool in (await session.list_tools()).tools}
        missing = await session.call_tool(agent["name"], {"text": "x"})
        assert missing.is_error and missing.meta is not None
        assert missing.meta["executor/problem"] == "entitlement_missing"
        assert _text(missing).startswith("entitlement_missing:")

        await service.grant(user.subject, agent["id"], uses=1)
        invalid = await session.call_tool(agent["name"], {"text": 42})
        assert invalid.is_error and invalid.meta is not None and invalid.meta["executor/problem"] == "input_invalid"
        assert invalid.meta["executor/errors"] and invalid.meta["executor/errors"][0]["pointer"] == "/text"
        assert "/text" in _text(invalid)

        assert not (await session.call_tool(agent["name"], {"text": "the one use"})).is_error
        used_up = await session.call_tool(agent["name"], {"text": "one more"})
        assert used_up.is_error and used_up.meta is not None
        assert used_up.meta["executor/problem"] == "entitlement_used_up"


async def test_an_agent_failure_is_a_tool_error(operator: Api, mcp_service: ServiceProcess,
                                                images: dict[str, str]) -> None:
    failing = await operator.register(["sh", "-c", "exit 3"], image=images["busybox"],
                                      output_schema={"type": "object"})
    status, agent, _ = await operator.get(f"/v1/agents/{failing}")
    assert status == 200, agent
    name = agent["name"]
    async with connected(mcp_service, operator.token) as session:
        result = await session.call_tool(name, {})
    assert result.is_error and result.meta is not None
    assert result.meta["executor/status"] == "FAILED" and result.meta["executor/problem"] == "nonzero_exit"
    assert result.structured_content is None


async def test_a_retried_call_runs_and_charges_once(operator: Api, mcp_service: ServiceProcess,
                                                    images: dict[str, str]) -> None:
    service = await operator.new_token("service")
    user = await operator.new_token("user")
    agent = await register_wordcount(service, images)
    granted = await service.grant(user.subject, agent["id"], uses=10)

    # The host's own key, on two sessions.
    meta: Any = {"executor/idempotency_key": "host-key-1"}
    ids = []
    for _ in range(2):
        async with connected(mcp_service, user.token) as session:
            result = await session.call_tool(agent["name"], {"text": "a b"}, meta=meta)
            assert not result.is_error and result.meta is not None, result
            ids.append(result.meta["executor/execution_id"])
    assert ids[0] == ids[1]
    assert (await _uses(service, user.subject, granted["id"]))["uses_consumed"] == 1

    # No key: the same JSON-RPC request sent twice on its session.
    async with aiohttp.ClientSession() as http:
        raw = _RawSession(http, mcp_url(mcp_service), user.token)
        await raw.initialize()
        call = {"name": agent["name"], "arguments": {"text": "c d e"}}
        first = await raw.request(7, "tools/call", call)
        again = await raw.request(7, "tools/call", call)
        other = await raw.request(8, "tools/call", call)
    assert first["_meta"]["executor/execution_id"] == again["_meta"]["executor/execution_id"]
    assert again["_meta"]["executor/replayed"] is True
    assert other["_meta"]["executor/execution_id"] != first["_meta"]["executor/execution_id"]
    assert (await _uses(service, user.subject, granted["id"]))["uses_consumed"] == 3
    status, page, _ = await user.get(f"/v1/executions?agent_id={agent['id']}")
    assert status == 200 and len(page["items"]) == 3


async def test_without_a_token_the_answer_is_401_with_www_authenticate(mcp_service: ServiceProcess) -> None:
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer exe_not-a-token"}):
            async with http.post(mcp_url(mcp_service), json=_initialize(1), headers=headers) as response:
                assert response.status == 401
                challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ") and 'resource_metadata="' in challenge
        metadata_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
        async with http.get(metadata_url) as response:
            assert response.status == 200
            document = await response.json()
    assert document["resource"] == mcp_url(mcp_service) and document["bearer_methods_supported"] == ["header"]


async def test_a_session_refuses_another_principals_token(operator: Api, mcp_service: ServiceProcess) -> None:
    alice = await operator.new_token("user")
    mallory = await operator.new_token("user")
    async with aiohttp.ClientSession() as http:
        raw = _RawSession(http, mcp_url(mcp_service), alice.token)
        await raw.initialize()
        raw.token = mallory.token
        status = await raw.post_status(9, "tools/list", {})
    assert status == 404


async def test_list_changed_arrives_after_a_grant(operator: Api, mcp_service: ServiceProcess,
                                                  images: dict[str, str]) -> None:
    service = await operator.new_token("service")
    user = await operator.new_token("user")
    agent = await register_wordcount(service, images)
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with connected(mcp_service, user.token, message_handler=on_message) as session:
        assert (await session.list_tools()).tools == []
        await asyncio.sleep(0.5)  # the standalone GET stream opens after initialize: not a timing assertion
        await service.grant(user.subject, agent["id"])
        await asyncio.wait_for(changed.wait(), 60)
        assert [tool.name for tool in (await session.list_tools()).tools] == [agent["name"]]


async def test_progress_is_reported_while_a_long_call_runs(operator: Api, mcp_service: ServiceProcess,
                                                           images: dict[str, str]) -> None:
    slow = await operator.register(["sh", "-c", "sleep 3; cat"], image=images["busybox"])
    status, agent, _ = await operator.get(f"/v1/agents/{slow}")
    assert status == 200, agent
    reported: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reported.append((progress, message))

    async with connected(mcp_service, operator.token) as session:
        result = await session.call_tool(agent["name"], {"x": 1}, progress_callback=on_progress)
    assert not result.is_error, result
    assert reported and all(message and "execution" in message for _, message in reported)


def _text(result: types.CallToolResult) -> str:
    (block,) = result.content
    assert isinstance(block, types.TextContent)
    return block.text


def _initialize(request_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}


class _RawSession:
    """Streamable HTTP by hand: to send one JSON-RPC request twice, with the same id."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.http, self.url, self.token = http, url, token
        self.session_id: str | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json, text/event-stream",
                   "MCP-Protocol-Version": "2025-11-25"}
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        return headers

    async def initialize(self) -> None:
        async with self.http.post(self.url, json=_initialize(0), headers=self._headers()) as response:
            assert response.status == 200, await response.text()
            self.session_id = response.headers["Mcp-Session-Id"]
            await response.read()
        async with self.http.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                                  headers=self._headers()) as response:
            assert response.status == 202, await response.text()

    async def post_status(self, request_id: int, method: str, params: dict[str, Any]) -> int:
        async with self.http.post(self.url, json={"jsonrpc": "2.0", "id": request_id, "method": method,
                                                  "params": params}, headers=self._headers()) as response:
            await response.read()
            return response.status

    async def request(self, request_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(self.url, json={"jsonrpc": "2.0", "id": request_id, "method": method,
                                                  "params": params}, headers=self._headers()) as response:
            assert response.status == 200, await response.text()
            body = await response.text()
        for line in body.splitlines():  # an SSE stream: the response is the last data line with our id
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("id") == request_id:
                    assert "result" in message, message
                    return dict(message["result"])
        raise AssertionError(f"no response in {body!r}")
