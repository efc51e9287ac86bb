"""Operators manage images: list what the engine holds, build from images/, remove what no agent uses."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import docker.errors
from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import json_response, read_json
from executor.errors import Conflict, NotFound, RequestInvalid
from executor.records.principals import Role
from executor.storage import agents as agent_sql
from runtimes.images import ImageBuildError, build_images, image_names

routes = web.RouteTableDef()
log = logging.getLogger(__name__)
PREFIX = "executor/"


@routes.get("/v1/images")
async def list_images(request: web.Request) -> web.Response:
    principal(request, Role.OPERATOR)
    services = request.app["services"]
    images = await services.engine.list_images(PREFIX)
    uses = await agent_sql.image_use_counts(services.db)
    for image in images:
        image["used_by_agent_versions"] = uses.get(image["id"], 0)
    return json_response({"items": images, "buildable": image_names()})


@routes.post("/v1/images/build")
async def build(request: web.Request) -> web.Response:
    """Build images from images/ (cached by content): `{"names": [...]}`, or `{"all": true}`.
    Building everything takes minutes, so it is asked for by name, never the fallback of a body
    that says nothing or something else."""
    principal(request, Role.OPERATOR)
    names = build_request(await read_json(request), image_names())
    client = request.app["services"].engine.client
    try:
        built = await asyncio.to_thread(build_images, client, names, progress=log.info,
                                        debian_mirror=request.app["services"].settings.debian_mirror)
    except ImageBuildError as exc:
        raise RequestInvalid(f"build failed: {exc}") from None
    return json_response({"items": [{"name": b.name, "tag": b.tag, "id": b.image_id, "cached": b.cached}
                                    for b in built]})


@routes.delete("/v1/images/{ref:.+}")
async def remove(request: web.Request) -> web.Response:
    """Remove an image with all its tags: 409 while an agent version runs it."""
    principal(request, Role.OPERATOR)
    services = request.app["services"]
    ref = request.match_info["ref"]
    image_id = await services.engine.image_id(ref)
    if image_id is None:
        raise NotFound(f"no image {ref!r} on the engine")
    users = await agent_sql.versions_using_image(services.db, image_id)
    if users:
        named = ", ".join(f"{row['name']} v{row['version']}" for row in users[:10])
        raise Conflict(f"image {image_id[:19]} is used by agent version(s): {named}",
                       errors=[{"pointer": str(row["id"]), "detail": f"{row['name']} version {row['version']}"}
                               for row in users])
    try:
        await services.engine.remove_image(image_id)
    except docker.errors.APIError as exc:
        raise Conflict(f"the engine refused: {exc.explanation or exc}") from None
    return web.Response(status=204)


def build_request(body: Any, known: list[str]) -> list[str] | None:
    """The image names a build body asks for; None for all of them. RequestInvalid otherwise."""
    def invalid(pointer: str, detail: str) -> RequestInvalid:
        return RequestInvalid(f"send {{\"names\": [...]}} with names from: {', '.join(known)}; or {{\"all\": true}}"
                              f" ({pointer or 'the body'}: {detail})", errors=[{"pointer": pointer, "detail": detail}])

    if not isinstance(body, dict):
        raise invalid("", "not an object")
    unknown = sorted(set(body) - {"names", "all"})
    if unknown:
        raise invalid(f"/{unknown[0]}", "unknown field")
    if ("names" in body) == ("all" in body):
        raise invalid("", "exactly one of names and all")
    if "all" in body:
        if body["all"] is not True:
            raise invalid("/all", "only true")
        return None
    names = body["names"]
    if not isinstance(names, list) or not names:
        raise invalid("/names", "a non-empty list of image names")
    for index, name in enumerate(names):
        if not isinstance(name, str) or name not in known:
            raise invalid(f"/names/{index}", "unknown image")
    return list(dict.fromkeys(names))
