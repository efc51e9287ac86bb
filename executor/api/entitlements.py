"""HTTP routes for entitlements: the marketplace service grants, lists and revokes them."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response, read_json
from executor.api.keys import ENTITLEMENTS
from executor.api.validation import query
from executor.records.principals import Role

routes = web.RouteTableDef()


@routes.put("/v1/entitlements")
async def grant(request: web.Request) -> web.Response:
    """Grant a user an agent, or set the terms of their live entitlement anew (201 / 200)."""
    caller = principal(request, Role.SERVICE, Role.OPERATOR)
    entitlement, created = await request.app[ENTITLEMENTS].grant(caller, await read_json(request))
    return json_response(entitlement.to_dict(datetime.now(UTC)), status=201 if created else 200,
                         headers={"Location": f"/v1/entitlements/{entitlement.id}"})


@routes.get("/v1/entitlements")
async def list_entitlements(request: web.Request) -> web.Response:
    found, cursor = await request.app[ENTITLEMENTS].list_page(
        principal(request), user=query(request, "user"),
        agent_id=query(request, "agent_id"), cursor=query(request, "cursor"), limit=query(request, "limit"))
    now = datetime.now(UTC)
    return json_response({"items": [e.to_dict(now) for e in found], "next_cursor": cursor})


@routes.delete("/v1/entitlements/{id}")
async def revoke(request: web.Request) -> web.Response:
    caller = principal(request, Role.SERVICE, Role.OPERATOR)
    revoked = await request.app[ENTITLEMENTS].revoke(caller, request.match_info["id"])
    return json_response(revoked.to_dict(datetime.now(UTC)))
