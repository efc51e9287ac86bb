"""HTTP routes for agents and tokens (the marketplace service's and operators' side)."""

from __future__ import annotations

from aiohttp import web

from executor import tokens
from executor.agents import service as agents
from executor.api.auth import principal
from executor.api.bodies import json_response, query_number, read_capped, read_json
from executor.errors import RequestInvalid
from executor.executions.service import owner_of
from executor.tokens import Role

routes = web.RouteTableDef()


@routes.post("/v1/agents")
async def register_agent(request: web.Request) -> web.Response:
    caller = principal(request, Role.OPERATOR, Role.SERVICE)
    services = request.app["services"]
    agent = await agents.register(services.db, services.settings, services.resolve_image, owner_of(caller),
                                  await read_json(request))
    return json_response(agent.to_dict(), status=201, headers={"Location": f"/v1/agents/{agent.agent_id}"})


@routes.get("/v1/agents")
async def list_agents(request: web.Request) -> web.Response:
    principal(request)
    limit = int(query_number(request, "limit", 50, maximum=100)) or 1
    found, cursor = await agents.list_page(request.app["services"].db, limit=limit, cursor=request.query.get("cursor"))
    return json_response({"items": [a.to_dict() for a in found], "next_cursor": cursor})


@routes.get("/v1/agents/{id}")
async def get_agent(request: web.Request) -> web.Response:
    principal(request)
    agent = await agents.get(request.app["services"].db, request.match_info["id"])
    return json_response(agent.to_dict())


@routes.put("/v1/agents/{id}/module")
async def upload_module(request: web.Request) -> web.Response:
    """The raw .wasm of a WASM agent's version: checked, compiled once, baked into its image."""
    principal(request, Role.OPERATOR, Role.SERVICE)
    services = request.app["services"]
    data = await read_capped(request, services.settings.max_module_bytes)
    agent = await agents.upload_module(services.db, services.settings, services.bake_wasm_module,
                                       request.match_info["id"], data)
    return json_response(agent.to_dict(), status=200)


@routes.post("/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    body = await read_json(request)
    role = body.get("role") if isinstance(body, dict) else None
    subject = body.get("subject") if isinstance(body, dict) else None
    if role not in {r.value for r in Role}:
        raise RequestInvalid("role must be user, service or operator", errors=[{"pointer": "/role", "detail": "unknown role"}])
    if not isinstance(subject, str) or not 0 < len(subject) <= 200:
        raise RequestInvalid("subject must be a non-empty string", errors=[{"pointer": "/subject", "detail": "required"}])
    issued = await tokens.issue(request.app["services"].db, Role(role), subject)
    return json_response(
        {"token": issued.token, "id": issued.id, "role": issued.role.value, "subject": issued.subject}, status=201
    )
