"""Reading JSON request bodies and writing JSON responses."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from executor.errors import MalformedRequest, PayloadTooLarge, RequestInvalid


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The body, or 413 past `limit` bytes (the app-wide cap is the largest route's)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request) -> Any:
    """The parsed body, within EXECUTOR_MAX_BODY_BYTES."""
    raw = await read_capped(request, request.app["services"].settings.max_body_bytes)
    if not raw:
        raise MalformedRequest("the request body is empty; send a JSON document")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
    pointer = _unstorable(body)
    if pointer is not None:
        raise RequestInvalid(
            "strings may not hold U+0000 or an unpaired surrogate (I-JSON, RFC 7493)",
            errors=[{"pointer": pointer, "detail": "U+0000 or an unpaired surrogate"}],
        )
    return body


def _unstorable(value: Any, pointer: str = "") -> str | None:
    """The JSON pointer of the first string PostgreSQL's jsonb cannot hold, if any."""
    if isinstance(value, str):
        if "\x00" in value:
            return pointer
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return pointer
        return None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        here = pointer + "/" + str(key).replace("~", "~0").replace("/", "~1")
        found = _unstorable(key, here) if isinstance(key, str) else None
        found = found if found is not None else _unstorable(item, here)
        if found is not None:
            return found
    return None


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json", headers=headers
    )


def query_number(request: web.Request, name: str, default: float, *, maximum: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RequestInvalid(f"{name} must be a number", errors=[{"pointer": f"?{name}", "detail": "a number"}]) from None
    if not 0 <= value <= maximum:
        raise RequestInvalid(f"{name} must be between 0 and {maximum:g}", errors=[{"pointer": f"?{name}", "detail": "out of range"}])
    return value


def query_int(request: web.Request, name: str, *, default: int | None = None, minimum: int = 0) -> int:
    """A non-negative integer query parameter (required when no default is given)."""
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise RequestInvalid(f"?{name}= is required", errors=[{"pointer": f"?{name}", "detail": "required"}])
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise RequestInvalid(f"{name} must be an integer >= {minimum}",
                             errors=[{"pointer": f"?{name}", "detail": "an integer"}])
    return int(raw)
