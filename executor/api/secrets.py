"""HTTP routes for agents' secrets: write-only values, listed by name and version (docs/secrets.md).

No answer carries a value: a write answers the secret's name, version and instants."""

from __future__ import annotations

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response, read_json
from executor.api.validation import query
from executor.records.principals import Role
from executor.secrets.service import Secrets

routes = web.RouteTableDef()

# The domain service, set by make_app (app.py); beside its routes, as keys.py keeps the others'.
SECRETS = web.AppKey("secrets", Secrets)

_MANAGERS = (Role.OPERATOR, Role.SERVICE)


@routes.put("/v1/agents/{id}/secrets/{name}")
async def put_secret(request: web.Request) -> web.Response:
    """Write (201) or replace (200) a secret of an agent the caller manages."""
    caller = principal(request, *_MANAGERS)
    body = await read_json(request)  # its shape checked against the contract's PutSecret
    entry, created = await request.app[SECRETS].put(caller, request.match_info["id"], request.match_info["name"],
                                                    body["value"])
    return json_response(entry.to_dict(), status=201 if created else 200)


@routes.get("/v1/agents/{id}/secrets")
async def list_secrets(request: web.Request) -> web.Response:
    caller = principal(request, *_MANAGERS)
    found, cursor = await request.app[SECRETS].list_page(caller, request.match_info["id"],
                                                         limit=query(request, "limit"), cursor=query(request, "cursor"))
    return json_response({"items": [entry.to_dict() for entry in found], "next_cursor": cursor})


@routes.delete("/v1/agents/{id}/secrets/{name}")
async def delete_secret(request: web.Request) -> web.Response:
    caller = principal(request, *_MANAGERS)
    await request.app[SECRETS].delete(caller, request.match_info["id"], request.match_info["name"])
    return web.Response(status=204)


@routes.post("/v1/secrets/reseal")
async def reseal(request: web.Request) -> web.Response:
    """After a key rotation: every secret still under a previous key, sealed under the current one."""
    principal(request, Role.OPERATOR)
    return json_response((await request.app[SECRETS].reseal()).to_dict())
