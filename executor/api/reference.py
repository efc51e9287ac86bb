"""The contract, served: GET /v1/openapi.json, and /docs, a page rendered here from the same
document (no script, no CDN: it works offline and behind any content policy)."""

from __future__ import annotations

import json
from functools import cache
from html import escape
from typing import Any

from aiohttp import web

from executor.api.contract import openapi

routes = web.RouteTableDef()

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}
h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;margin-top:2.5rem}
section.op{border:1px solid #d0d7de;border-radius:6px;padding:.5rem 1rem;margin:1rem 0}
.method{font:bold 13px monospace;padding:2px 6px;border-radius:4px;background:#ddf4ff;margin-right:.5rem}
.path{font-family:monospace;font-size:15px}
pre{background:#f6f8fa;padding:.5rem;overflow:auto;max-height:24rem;font-size:12px}
table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:2px 8px;text-align:left;vertical-align:top}
details summary{cursor:pointer}
"""


@cache
def _document_bytes() -> bytes:
    return json.dumps(openapi.document(), indent=1).encode()


@routes.get("/v1/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=_document_bytes(), content_type="application/json",
                        headers={"Cache-Control": "max-age=300"})


@routes.get("/docs")
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=render_page(), content_type="text/html", headers={"Cache-Control": "max-age=300"})


def _json(value: Any) -> str:
    return f"<pre>{escape(json.dumps(value, indent=2))}</pre>"


def _operation_html(method: str, path: str, op: dict[str, Any]) -> str:
    roles = ", ".join(op["x-roles"]) if op["security"] else "public (no token)"
    parts = [f'<section class="op" id="{escape(op["operationId"])}">',
             f'<h3><span class="method">{method.upper()}</span><span class="path">{escape(path)}</span></h3>',
             f"<p>{escape(op['summary'])}. <b>Roles:</b> {escape(roles)}</p>"]
    if "description" in op:
        parts.append(f"<p>{escape(op['description'])}</p>")
    if op["parameters"]:
        rows = "".join(f"<tr><td><code>{escape(p['name'])}</code></td><td>{p['in']}</td>"
                       f"<td>{'yes' if p['required'] else ''}</td><td><code>{escape(json.dumps(p['schema']))}</code>"
                       f"</td><td>{escape(p.get('description', ''))}</td></tr>" for p in op["parameters"])
        parts.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th><th></th></tr>"
                     f"{rows}</table>")
    if "requestBody" in op:
        for media, content in op["requestBody"]["content"].items():
            parts.append(f"<details><summary>Request body ({escape(media)})</summary>{_json(content['schema'])}")
            for name, example in content.get("examples", {}).items():
                parts.append(f"<p>Example: {escape(name)}</p>{_json(example['value'])}")
            parts.append("</details>")
    parts.append("<table><tr><th>status</th><th>answer</th></tr>")
    for status, answer in op["responses"].items():
        media = ", ".join(answer.get("content", {})) or "no body"
        parts.append(f"<tr><td>{status}</td><td>{escape(answer['description'])} <i>({escape(media)})</i></td></tr>")
    parts.append("</table></section>")
    return "".join(parts)


@cache
def render_page() -> str:
    doc = openapi.document()
    by_tag: dict[str, list[str]] = {}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op["tags"][0], []).append(_operation_html(method, path, op))
    toc = " · ".join(f'<a href="#tag-{escape(tag)}">{escape(tag)}</a>' for tag in by_tag)
    body = "".join(f'<h2 id="tag-{escape(tag)}">{escape(tag)}</h2>{"".join(ops)}' for tag, ops in by_tag.items())
    schemas = "".join(f'<details id="schema-{escape(name)}"><summary><code>{escape(name)}</code></summary>'
                      f"{_json(schema)}</details>" for name, schema in doc["components"]["schemas"].items())
    info = doc["info"]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(info['title'])} API</title>"
            f"<style>{_STYLE}</style></head><body><h1>{escape(info['title'])} API {escape(info['version'])}</h1>"
            f"<p>{escape(info['summary'])} {escape(info['description'])}</p>"
            '<p>Machine-readable: <a href="/v1/openapi.json">/v1/openapi.json</a> (OpenAPI 3.1).</p>'
            f"<nav>{toc}</nav>{body}<h2>Schemas</h2>{schemas}</body></html>")
