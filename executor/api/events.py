"""Live status of one execution as Server-Sent Events: GET /v1/executions/{id}/events.

    id: 1            the current state at once...
    event: status
    data: {"id": "...", "status": "PENDING", "error": null, "started_at": null, "finished_at": null}

    id: 2            ...one event per change...
    event: status
    data: {"id": "...", "status": "RUNNING", ...}

    id: 3            ...the task's stderr, line by line, while it runs...
    event: stderr
    data: {"line": "step 1", "seq": 1}

    id: 4            ...(lines over the rate or size cap are counted, not sent)...
    event: stderr
    data: {"dropped": 12}

    id: 5            ...and the whole record once final; then the stream ends.
    event: final
    data: {...the execution record...}

Stderr lines are relayed over Redis pub/sub from the worker as they are read
(executor/executions/progress.py: at most 50 a second, bursts of 100, within the log's
cap, each at most 4 KiB). The stream subscribes to them before it reads the record, so
every line from the state it shows first is sent, as far as pub/sub delivers; lines
written before the client connected are not replayed, nor after a reconnection: they are a
live view, and the whole log is kept with the execution (GET /v1/executions/{id}/logs).

A comment line (`: keepalive`) goes out every 15 s of silence. Changes are signalled
over Redis pub/sub, which can drop a message: the record is also re-read at least every
second (Executions.changes), and whatever changed is sent. Events are derived
from the state, not stored: a reconnecting client (`Last-Event-ID`) gets the current
state again, numbered after the id it saw. A client closes on `final` (an EventSource
would otherwise reconnect and be sent the final event again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from aiohttp import web

from executor.api.auth import principal
from executor.api.bodies import is_decimal
from executor.api.keys import EXECUTIONS
from executor.executions.service import state_of
from executor.queue.events import StderrFollower
from executor.records.executions import parse_execution_id

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


async def _send_stderr(out: _Writer, follower: StderrFollower | None) -> None:
    """The stderr payloads that came, as `stderr` events (those this stream fell behind on counted)."""
    if follower is None:
        return
    for payload in follower.take():
        try:
            data = json.loads(payload)
        except ValueError:
            continue
        if isinstance(data, dict):
            await out.event("stderr", data)
    if follower.lost:
        lost, follower.lost = follower.lost, 0
        await out.event("stderr", {"dropped": lost})


@routes.get("/v1/executions/{id}/events")
async def execution_events(request: web.Request) -> web.StreamResponse:
    executions = request.app[EXECUTIONS]
    caller = principal(request)
    execution_id = parse_execution_id(request.match_info["id"])
    # Subscribed before the record is read, so that no line after the state sent first is missed;
    # nothing is sent before the read below has authorized the caller.
    stderr = await executions.events.follow_stderr(execution_id) if execution_id else None
    try:
        record = await executions.get(caller, request.match_info["id"])  # 404 before any stream
    except BaseException:
        if stderr is not None:
            stderr.close()
        raise
    if record.status.is_final and stderr is not None:
        stderr.close()
        stderr = None
    changes = executions.changes(caller, record)
    change: asyncio.Future[Any] | None = None
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
    })
    try:
        await response.prepare(request)
        out = _Writer(response, _last_event_id(request))
        if not record.status.is_final:
            await out.event("status", state_of(record))
        while not record.status.is_final:
            # The next state change (or the poll's None), and meanwhile any stderr line that comes.
            change = change or asyncio.ensure_future(changes.next())
            waiting: set[asyncio.Future[Any]] = {change}
            if stderr is not None:
                waiting.add(asyncio.ensure_future(stderr.arrived.wait()))
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for future in waiting - {change}:
                future.cancel()
            if _gone(request):
                return response
            await _send_stderr(out, stderr)
            if not change.done():
                continue
            changed, change = change.result(), None
            if changed is None:
                await out.keepalive_if_quiet()
                continue
            record = changed
            if not record.status.is_final:
                await out.event("status", state_of(record))
        await _send_stderr(out, stderr)  # what came with the end
        await out.event("final", record.to_dict())
        await response.write_eof()
    except ConnectionResetError:  # the client went away
        pass
    finally:
        if change is not None and not change.done():
            change.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await change
        if stderr is not None:
            stderr.close()
        changes.close()
    return response
