"""HTTP route for bearer tokens: operators issue them (shown once in the answer)."""

from __future__ import annotations

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response, read_json
from executor.api.keys import TOKENS
from executor.records.principals import Role
from executor.tokens import token_request

routes = web.RouteTableDef()


@routes.post("/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    role, subject = token_request(await read_json(request))
    issued = await request.app[TOKENS].issue(role, subject)
    return json_response(
        {"token": issued.token, "id": issued.id, "role": issued.role.value, "subject": issued.subject}, status=201
    )
