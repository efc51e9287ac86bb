"""HTTP routes for webhooks: a caller's endpoint (default URL and signing secret), and the
deliveries of an execution with every attempt made."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response, read_json
from executor.errors import RequestInvalid
from executor.records.principals import Role
from executor.storage import webhooks as webhook_sql
from executor.storage.webhooks import Endpoint
from executor.webhooks import signing
from executor.webhooks.targets import check_url

routes = web.RouteTableDef()


def _endpoint(endpoint: Endpoint) -> dict[str, Any]:
    # The secret is shown to its owner, who needs it to verify what they receive.
    return {"url": endpoint.url, "secret": endpoint.secret,
            "created_at": _iso(endpoint.created_at), "updated_at": _iso(endpoint.updated_at)}


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _secret_response(endpoint: Endpoint) -> web.Response:
    # The answer holds a secret: no cache may keep it.
    return json_response(_endpoint(endpoint), headers={"Cache-Control": "no-store"})


def _owner(request: web.Request) -> str:
    return principal(request, Role.SERVICE, Role.OPERATOR).party


@routes.get("/v1/webhooks/endpoint")
async def get_endpoint(request: web.Request) -> web.Response:
    endpoint = await webhook_sql.ensure_endpoint(request.app["services"].db, _owner(request), signing.new_secret())
    return _secret_response(endpoint)


@routes.put("/v1/webhooks/endpoint")
async def put_endpoint(request: web.Request) -> web.Response:
    owner = _owner(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise RequestInvalid("the body must be an object {\"url\": string or null}",
                             errors=[{"pointer": "", "detail": "an object"}])
    unknown = sorted(set(body) - {"url"})
    if unknown:
        raise RequestInvalid(f"unknown fields: {', '.join(unknown)}",
                             errors=[{"pointer": f"/{name}", "detail": "unknown field"} for name in unknown])
    if "url" not in body:
        raise RequestInvalid("url is required (null removes it)", errors=[{"pointer": "/url", "detail": "required"}])
    services = request.app["services"]
    url = None if body["url"] is None else check_url(body["url"], services.settings, pointer="/url")
    return _secret_response(await webhook_sql.set_endpoint_url(services.db, owner, url, signing.new_secret()))


@routes.post("/v1/webhooks/endpoint/rotate")
async def rotate(request: web.Request) -> web.Response:
    endpoint = await webhook_sql.rotate_secret(request.app["services"].db, _owner(request), signing.new_secret())
    return _secret_response(endpoint)


@routes.get("/v1/executions/{id}/webhooks")
async def deliveries(request: web.Request) -> web.Response:
    services = request.app["services"]
    # Raises 404 when the caller may not see the execution, as for every other execution route.
    record = await services.executions.get(principal(request), request.match_info["id"])
    found = await webhook_sql.deliveries_of(services.db, record.id)
    return json_response({"items": [delivery.to_dict() for delivery in found]})
