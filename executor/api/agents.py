"""HTTP routes for agents and their versions (the marketplace service's and operators' side)."""

from __future__ import annotations

from aiohttp import web

from executor.agents.versions import check_may_manage
from executor.api.auth import principal
from executor.api.bodies import is_decimal, json_response, read_capped, read_json
from executor.api.keys import AGENTS, SETTINGS
from executor.api.validation import query
from executor.errors import NotFound
from executor.records.principals import Role

routes = web.RouteTableDef()


@routes.post("/v1/agents")
async def register_agent(request: web.Request) -> web.Response:
    caller = principal(request, Role.OPERATOR, Role.SERVICE)
    agent = await request.app[AGENTS].register(caller.party, await read_json(request))
    return json_response(agent.to_dict(), status=201, headers={"Location": f"/v1/agents/{agent.agent_id}"})


@routes.get("/v1/agents")
async def list_agents(request: web.Request) -> web.Response:
    principal(request)
    found, cursor = await request.app[AGENTS].list_page(limit=query(request, "limit"), cursor=query(request, "cursor"))
    return json_response({"items": [a.to_dict() for a in found], "next_cursor": cursor})


@routes.get("/v1/agents/{id}")
async def get_agent(request: web.Request) -> web.Response:
    principal(request)
    agent = await request.app[AGENTS].get(request.match_info["id"])
    return json_response(agent.to_dict())


@routes.put("/v1/agents/{id}/module")
@routes.put("/v1/agents/{id}/versions/{version}/module")
async def upload_module(request: web.Request) -> web.Response:
    """The raw .wasm of a WASM agent's version (the newest unless named): checked, compiled
    once, baked into its image."""
    caller = principal(request, Role.OPERATOR, Role.SERVICE)
    agents = request.app[AGENTS]
    version = _version(request) if "version" in request.match_info else None
    check_may_manage(caller, await agents.get(request.match_info["id"], version))
    data = await read_capped(request, request.app[SETTINGS].max_module_bytes)
    agent = await agents.upload_module(request.match_info["id"], data, version)
    return json_response(agent.to_dict(), status=200)


@routes.post("/v1/agents/{id}/versions")
async def publish_version(request: web.Request) -> web.Response:
    """A new immutable version with the agent's kind; the fields of a registration but name and kind."""
    caller = principal(request, Role.OPERATOR, Role.SERVICE)
    agent = await request.app[AGENTS].publish(caller, request.match_info["id"], await read_json(request))
    return json_response(agent.to_dict(), status=201,
                         headers={"Location": f"/v1/agents/{agent.agent_id}/versions/{agent.version}"})


@routes.get("/v1/agents/{id}/versions")
async def list_versions(request: web.Request) -> web.Response:
    principal(request)
    found, cursor = await request.app[AGENTS].versions_page(request.match_info["id"], limit=query(request, "limit"),
                                                            cursor=query(request, "cursor"))
    return json_response({"items": [v.to_dict() for v in found], "next_cursor": cursor})


@routes.get("/v1/agents/{id}/versions/{version}")
async def get_version(request: web.Request) -> web.Response:
    principal(request)
    agent = await request.app[AGENTS].get(request.match_info["id"], _version(request))
    return json_response(agent.to_dict())


@routes.post("/v1/agents/{id}/versions/{version}/deprecate")
async def deprecate_version(request: web.Request) -> web.Response:
    return await _move(request, "deprecated")


@routes.post("/v1/agents/{id}/versions/{version}/withdraw")
async def withdraw_version(request: web.Request) -> web.Response:
    return await _move(request, "withdrawn")


async def _move(request: web.Request, status: str) -> web.Response:
    caller = principal(request, Role.OPERATOR, Role.SERVICE)
    agent = await request.app[AGENTS].move(caller, request.match_info["id"], _version(request), status)
    return json_response(agent.to_dict())


@routes.get("/v1/agents/{id}/stats")
async def agent_stats(request: web.Request) -> web.Response:
    """Per version: executions, how they ended, success rate, p50/p95 durations."""
    principal(request, Role.OPERATOR, Role.SERVICE)
    return json_response(await request.app[AGENTS].stats(request.match_info["id"]))


def _version(request: web.Request) -> int:
    raw = request.match_info["version"]
    if not is_decimal(raw) or not 0 < int(raw) < 2**31:
        raise NotFound(f"no version {raw!r}")
    return int(raw)
