"""Reading JSON request bodies and writing JSON responses."""

from __future__ import annotations

import asyncio
import json
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from executor import jsondoc
from executor.api.keys import SETTINGS
from executor.errors import MalformedRequest, PayloadTooLarge, RequestInvalid

_INLINE_BYTES = 8 * 1024  # at most ~3 ms of parsing and checking, whatever the shape
_large_bodies = ThreadPoolExecutor(max_workers=1, thread_name_prefix="large-body")


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The body, or 413 past `limit` bytes (the app-wide cap is the largest route's)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)  # after any Content-Encoding is undone: a compression bomb stops here
            if size > limit:
                raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
            chunks.append(chunk)
    except (RequestPayloadError, HttpProcessingError) as exc:  # a body that does not decode (encoding, chunking)
        raise MalformedRequest(f"the request body cannot be read: {str(exc).strip() or type(exc).__name__}") from None
    return b"".join(chunks)


PARSED_BODY_KEY = "parsed_body"


async def read_json(request: web.Request) -> Any:
    """The parsed body, within EXECUTOR_MAX_BODY_BYTES: JSON that every later step can handle
    (executor/jsondoc.py), else 400 (not JSON) or 422 (JSON we do not store, with its pointer).
    Read once: a later call (the handler's, after validation.py checked it) returns the same document."""
    if PARSED_BODY_KEY not in request:
        request[PARSED_BODY_KEY] = await _parse_json(request)
    return request[PARSED_BODY_KEY]


async def _parse_json(request: web.Request) -> Any:
    raw = await read_capped(request, request.app[SETTINGS].max_body_bytes)
    if not raw:
        raise MalformedRequest("the request body is empty; send a JSON document")
    try:
        # Parsing and checking a megabyte takes 0.1-0.5 s: only small bodies are read on the loop,
        # large ones one at a time (json's C parser holds the interpreter lock while it runs).
        if len(raw) <= _INLINE_BYTES:
            return jsondoc.loads(raw)
        return await asyncio.get_running_loop().run_in_executor(_large_bodies, jsondoc.loads, raw)
    except jsondoc.DocumentRefused as exc:
        if exc.pointer is None:
            raise MalformedRequest(f"the body is not accepted: {exc.reason}") from None
        raise RequestInvalid(f"the body is not accepted: {exc}",
                             errors=[{"pointer": exc.pointer, "detail": exc.reason}]) from None


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data).encode(), content_type="application/json", headers=headers
    )


def query_number(request: web.Request, name: str, default: float, *, maximum: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw) if raw.isascii() else math.nan
    except ValueError:
        raise RequestInvalid(f"{name} must be a number",
                             errors=[{"pointer": f"?{name}", "detail": "a number"}]) from None
    if not 0 <= value <= maximum:
        raise RequestInvalid(f"{name} must be between 0 and {maximum:g}",
                             errors=[{"pointer": f"?{name}", "detail": "out of range"}])
    return value


def query_int(request: web.Request, name: str, *, default: int | None = None, minimum: int = 0,
              maximum: int = 2**63 - 1) -> int:
    """A non-negative integer query parameter (required when no default is given)."""
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise RequestInvalid(f"?{name}= is required", errors=[{"pointer": f"?{name}", "detail": "required"}])
        return default
    if not is_decimal(raw) or not minimum <= int(raw) <= maximum:
        raise RequestInvalid(f"{name} must be an integer from {minimum} to {maximum}",
                             errors=[{"pointer": f"?{name}", "detail": "an integer in range"}])
    return int(raw)


def is_decimal(raw: str, *, max_digits: int = 18) -> bool:
    """ASCII digits only, few enough for a bigint: str.isdigit() also takes '²' and '١', which
    int() then refuses."""
    return raw.isascii() and raw.isdigit() and len(raw) <= max_digits
