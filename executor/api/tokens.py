"""HTTP routes for bearer tokens: issue (the secret shown once), list, revoke (docs/tokens.md)."""

from __future__ import annotations

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response, read_json
from executor.api.keys import TOKENS
from executor.api.validation import query
from executor.records.principals import Role

routes = web.RouteTableDef()

_MANAGERS = (Role.SERVICE, Role.OPERATOR)


@routes.post("/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    """An operator issues any token, a service user tokens; the answer holds the secret, this once."""
    caller = principal(request, *_MANAGERS)
    issued = await request.app[TOKENS].create(caller, await read_json(request))
    return json_response(issued.to_dict(), status=201, headers={"Cache-Control": "no-store"})


@routes.get("/v1/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    found, cursor = await request.app[TOKENS].list_page(
        principal(request, *_MANAGERS), role=query(request, "role"), subject=query(request, "subject"),
        cursor=query(request, "cursor"), limit=query(request, "limit"))
    return json_response({"items": [token.to_dict() for token in found], "next_cursor": cursor})


@routes.delete("/v1/tokens/{id}")
async def revoke_token(request: web.Request) -> web.Response:
    revoked = await request.app[TOKENS].revoke(principal(request, *_MANAGERS), request.match_info["id"])
    return json_response(revoked.to_dict())
