"""Operators manage images: list what the engine holds, build from images/, remove what no agent uses."""

from __future__ import annotations

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response, read_json
from executor.api.keys import IMAGES
from executor.api.validation import query
from executor.records.principals import Role

routes = web.RouteTableDef()


@routes.get("/v1/images")
async def list_images(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    images = request.app[IMAGES]
    found, cursor = await images.on_engine(limit=query(request, "limit"), cursor=query(request, "cursor"))
    return json_response({"items": found, "next_cursor": cursor, "buildable": images.buildable()})


@routes.post("/v1/images/build")
async def build(request: web.Request) -> web.Response:
    """Build images from images/ (cached by content): `{"names": [...]}`, or `{"all": true}`.
    Building everything takes minutes, so it is asked for by name, never the fallback of a body
    that says nothing or something else."""
    principal(request, Role.OPERATOR)
    built = await request.app[IMAGES].build(await read_json(request))
    return json_response({"items": [{"name": b.name, "tag": b.tag, "id": b.image_id, "cached": b.cached}
                                    for b in built]})


@routes.delete("/v1/images/{ref:(?!build$).+}")  # /v1/images/build is the build route's: 405, not a name
async def remove(request: web.Request) -> web.Response:
    """Remove an image with all its tags: 409 while an agent version runs it."""
    principal(request, Role.OPERATOR)
    await request.app[IMAGES].remove(request.match_info["ref"])
    return web.Response(status=204)
