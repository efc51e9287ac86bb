"""Operators manage the engine's images: list what it holds, build from images/, remove what no
agent version uses. No registry is involved: an agent's image must be on the engine."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import asyncpg
import docker.errors

from executor.errors import Conflict, NotFound, RequestInvalid
from executor.pagination import query_invalid
from executor.settings import Settings
from executor.storage import agents as agent_sql
from runtimes.engine import DockerEngine
from runtimes.images import BuiltImage, ImageBuildError, build_images, image_names

log = logging.getLogger(__name__)
PREFIX = "executor/"
IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


class Images:
    """The images under executor/ on this engine, and which agent versions pin each one."""

    def __init__(self, db: asyncpg.Pool, settings: Settings, engine: DockerEngine) -> None:
        self.db = db
        self.settings = settings
        self.engine = engine

    def buildable(self) -> list[str]:
        """The names of the images the images folder holds recipes for (EXECUTOR_IMAGES_DIR)."""
        return image_names(self.settings.images_dir)

    async def on_engine(self, *, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the images, by id, each with its tags and how many agent versions pin it. The
        engine pages nothing, so the page is cut here; the cursor is the last image's id (an
        image removed meanwhile moves no other image)."""
        if cursor is not None and not IMAGE_ID.fullmatch(cursor):
            raise query_invalid("cursor", "not a cursor this service gave")
        images = sorted((image for image in await self.engine.list_images(PREFIX)
                         if cursor is None or image["id"] > cursor), key=lambda image: image["id"])[:limit]
        uses = await agent_sql.image_use_counts(self.db)
        for image in images:
            image["used_by_agent_versions"] = uses.get(image["id"], 0)
        return images, images[-1]["id"] if len(images) == limit else None

    async def build(self, body: Any) -> list[BuiltImage]:
        """Build the images a request names (build_request), cached by content."""
        names = build_request(body, self.buildable())
        try:
            return await asyncio.to_thread(build_images, self.engine.client, names, progress=log.info,
                                           debian_mirror=self.settings.debian_mirror,
                                           images_dir=self.settings.images_dir)
        except ImageBuildError as exc:
            raise RequestInvalid(f"build failed: {exc}") from None

    async def remove(self, ref: str) -> None:
        """Remove an image with all its tags: Conflict while an agent version pins it.

        Only an image the listing shows (tagged under executor/), named by one of its tags or its
        full id: the engine would take a short id prefix or any other image too, and removing
        those is not this API's business."""
        image_id = await self.engine.image_id(ref)
        managed = {image["id"]: image["tags"] for image in await self.engine.list_images(PREFIX)}
        tags = managed.get(image_id or "", [])
        if image_id is None or not tags or ref not in (image_id, *tags, *(t.removesuffix(":latest") for t in tags)):
            raise NotFound(f"no image {ref!r} under {PREFIX} on the engine (name it by a tag or its full id)")
        users = await agent_sql.versions_using_image(self.db, image_id)
        if users:
            named = ", ".join(f"{row['name']} v{row['version']}" for row in users[:10])
            raise Conflict(f"image {image_id[:19]} is used by agent version(s): {named}",
                           errors=[{"pointer": str(row["id"]), "detail": f"{row['name']} version {row['version']}"}
                                   for row in users])
        try:
            await self.engine.remove_image(image_id)
        except docker.errors.APIError as exc:
            raise Conflict(f"the engine refused: {exc.explanation or exc}") from None


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
