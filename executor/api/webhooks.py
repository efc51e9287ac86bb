"""HTTP routes for webhooks: a caller's endpoint (default URL and signing secret), and the
deliveries of an execution with every attempt made."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response, read_json
from executor.api.keys import EXECUTIONS, WEBHOOK_ENDPOINTS
from executor.api.validation import query
from executor.records.principals import Role
from executor.records.webhooks import Endpoint

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
    return _secret_response(await request.app[WEBHOOK_ENDPOINTS].get(_owner(request)))


@routes.put("/v1/webhooks/endpoint")
async def put_endpoint(request: web.Request) -> web.Response:
    owner = _owner(request)
    return _secret_response(await request.app[WEBHOOK_ENDPOINTS].update(owner, await read_json(request)))


@routes.post("/v1/webhooks/endpoint/rotate")
async def rotate(request: web.Request) -> web.Response:
    return _secret_response(await request.app[WEBHOOK_ENDPOINTS].rotate(_owner(request)))


@routes.get("/v1/executions/{id}/webhooks")
async def deliveries(request: web.Request) -> web.Response:
    # Raises 404 when the caller may not see the execution, as for every other execution route.
    record = await request.app[EXECUTIONS].get(principal(request), request.match_info["id"])
    found, cursor = await request.app[WEBHOOK_ENDPOINTS].deliveries(record.id, limit=query(request, "limit"),
                                                                     cursor=query(request, "cursor"))
    return json_response({"items": [delivery.to_dict() for delivery in found], "next_cursor": cursor})


@routes.post("/v1/executions/{id}/webhooks/{delivery_id}/resend")
async def resend(request: web.Request) -> web.Response:
    # An operator resends any delivery; a service those signed with its own endpoint. The execution
    # must be one the caller may read (404 otherwise, as for its list of deliveries).
    caller = principal(request, Role.SERVICE, Role.OPERATOR)
    record = await request.app[EXECUTIONS].get(caller, request.match_info["id"])
    owner = None if caller.role is Role.OPERATOR else caller.party
    delivery = await request.app[WEBHOOK_ENDPOINTS].resend(record.id, request.match_info["delivery_id"], owner=owner)
    return json_response(delivery.to_dict())
