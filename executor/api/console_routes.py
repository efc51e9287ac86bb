"""The operator console, served: GET /console and its static assets (executor/api/console/).

The page is plain HTML, CSS and ES modules with no build step; it calls the public API with the
bearer token the operator types in, and nothing else. Every answer carries a strict
Content-Security-Policy: no inline script, nothing from another origin, no framing."""

from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web

from executor.api.contract.console import ASSETS, PAGE

routes = web.RouteTableDef()

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
                               "script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on each load: a deploy's new assets are picked up at once (they are small).
    "Cache-Control": "no-cache",
}


@cache
def _asset(name: str) -> bytes:
    """A file shipped with the package (package data of executor.api, read once)."""
    return resources.files("executor.api").joinpath("console", name).read_bytes()


def _file(name: str, media: str) -> web.Response:
    return web.Response(body=_asset(name), content_type=media, charset="utf-8", headers=SECURITY_HEADERS)


@routes.get("/console")
async def page(request: web.Request) -> web.Response:
    return _file(PAGE, "text/html")


def _serve(name: str, media: str) -> None:
    async def asset(request: web.Request) -> web.Response:
        return _file(name, media)

    routes.get(f"/console/{name}")(asset)


for _name, (_media, _) in ASSETS.items():
    _serve(_name, _media)
