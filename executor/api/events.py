"""Live status of one execution as Server-Sent Events: GET /v1/executions/{id}/events.

    id: 1            the current state at once...
    event: status
    data: {"id": "...", "status": "PENDING", "error": null, "started_at": null, "finished_at": null}

    id: 2            ...one event per change...
    event: status
    data: {"id": "...", "status": "RUNNING", ...}

    id: 3            ...and the whole record once final; then the stream ends.
    event: final
    data: {...the execution record...}

A comment line (`: keepalive`) goes out every 15 s of silence. Changes are signalled
over Redis pub/sub, which can drop a message: the record is also re-read at least every
second (Executions.changes), and whatever changed is sent. Events are derived
from the state, not stored: a reconnecting client (`Last-Event-ID`) gets the current
state again, numbered after the id it saw. A client closes on `final` (an EventSource
would otherwise reconnect and be sent the final event again).
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import is_decimal
from executor.api.keys import EXECUTIONS
from executor.executions.service import state_of

routes = web.RouteTableDef()

HEARTBEAT_S = 15.0


class _Writer:
    """Numbered events and keepalives on one stream."""

    def __init__(self, response: web.StreamResponse, last_id: int) -> None:
        self.response = response
        self.last_id = last_id
        self.last_write = time.monotonic()

    async def event(self, kind: str, data: dict[str, Any]) -> None:
        self.last_id += 1
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)  # one line: JSON escapes newlines
        await self._write(f"id: {self.last_id}\nevent: {kind}\ndata: {payload}\n\n")

    async def keepalive_if_quiet(self) -> None:
        if time.monotonic() - self.last_write >= HEARTBEAT_S:
            await self._write(": keepalive\n\n")

    async def _write(self, text: str) -> None:
        await self.response.write(text.encode())
        self.last_write = time.monotonic()


def _last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID", "").strip()
    return int(raw) if is_decimal(raw) else 0


def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


@routes.get("/v1/executions/{id}/events")
async def execution_events(request: web.Request) -> web.StreamResponse:
    executions = request.app[EXECUTIONS]
    caller = principal(request)
    record = await executions.get(caller, request.match_info["id"])  # 404 before any stream
    changes = executions.changes(caller, record)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
    })
    try:
        await response.prepare(request)
        out = _Writer(response, _last_event_id(request))
        if not record.status.is_final:
            await out.event("status", state_of(record))
        while not record.status.is_final:
            changed = await changes.next()
            if _gone(request):
                return response
            if changed is None:
                await out.keepalive_if_quiet()
                continue
            record = changed
            if not record.status.is_final:
                await out.event("status", state_of(record))
        await out.event("final", record.to_dict())
        await response.write_eof()
    except ConnectionResetError:  # the client went away
        pass
    finally:
        changes.close()
    return response
