"""Live progress: a running task's stderr, line by line, to whoever follows its execution
(GET /v1/executions/{id}/events, `event: stderr`; executor/api/events.py).

The runtime hands each piece of stderr it read to `StderrRelay.feed` (runtimes/container.py,
`on_stderr`). The relay cuts it into lines and publishes them, each as one JSON payload:

    {"line": "<text, invalid UTF-8 replaced>", "seq": n}    n: the line's number in this run
    {"dropped": n}                                           n lines were not relayed

A line ends at `\\n`, `\\r\\n` or a lone `\\r` (a progress bar redraws with it); a partial line waits
for its end, or is cut once past MAX_LINE_BYTES (at a character boundary when the text is
UTF-8), and what is left is sent at the end of the task. Caps: lines at RATE_PER_S on
average with bursts of BURST (a token bucket), and the bytes relayed in all within the log's
cap (max_log_bytes). A line over a cap is dropped and counted, and one `dropped` notice goes
before the next line relayed (or at the end). `seq` counts every line, relayed or not, so a
follower sees where lines are missing.

It never holds the task back: `feed` only queues (at most IN_FLIGHT payloads waiting for
Redis; past that, lines are dropped as if over the rate), and a background sender publishes.
The live view is best effort; the whole log (within its cap) is in the final record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 4096
RATE_PER_S = 50.0
BURST = 100
IN_FLIGHT = 256
DRAIN_S = 1.0  # at the end, how long the payloads still queued may take to go out

_LINE_END = re.compile(rb"\r\n|\r|\n")


class StderrRelay:
    """One run's stderr, cut into lines, capped, published without blocking. `publish` sends
    payloads (JSON text) in order: Events.publish_stderr bound to the execution."""

    def __init__(self, publish: Callable[..., Awaitable[None]], *, max_bytes: int, rate_per_s: float = RATE_PER_S,
                 burst: int = BURST, max_line_bytes: int = MAX_LINE_BYTES, in_flight: int = IN_FLIGHT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._publish = publish
        self.max_bytes = max_bytes
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._refilled = clock()
        self._max_line = max_line_bytes
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=in_flight)
        self._sender: asyncio.Task[None] | None = None
        self._partial = bytearray()
        self._after_cr = False  # the last piece ended with \r: a \n first in the next one ends no line
        self._closed = False
        self.seq = 0  # lines cut so far, relayed or not
        self.relayed_bytes = 0  # bytes of the lines relayed (as read, before decoding)
        self.dropped = 0  # lines not relayed since the last notice
        self.failed = 0  # payloads Redis did not take

    def feed(self, chunk: bytes) -> None:
        """A piece of stderr as read: whole lines go out now, a partial one waits."""
        if self._closed or not chunk:
            return
        start = 1 if self._after_cr and chunk[:1] == b"\n" else 0
        for end in _LINE_END.finditer(chunk, start):
            self._partial += chunk[start:end.start()]
            self._cut_long()
            self._line(bytes(self._partial))
            self._partial.clear()
            start = end.end()
        self._after_cr = chunk.endswith(b"\r")
        self._partial += chunk[start:]
        self._cut_long()

    async def close(self, drain_s: float = DRAIN_S) -> None:
        """The end of the run: the partial line left and a last `dropped` notice go out; waits up
        to drain_s for what is queued, then stops."""
        if self._closed:
            return
        if self._partial:
            self._cut_long()
            self._line(bytes(self._partial))
            self._partial.clear()
        self._closed = True
        deadline = time.monotonic() + drain_s
        if self.dropped and not self._send({"dropped": self.dropped}):
            with contextlib.suppress(TimeoutError):  # the queue is full: the last word waits for room
                await asyncio.wait_for(self._queue.put(_json({"dropped": self.dropped})), drain_s)
        if self._sender is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), max(deadline - time.monotonic(), 0.0))
        self._sender.cancel()
        await asyncio.gather(self._sender, return_exceptions=True)
        if self.failed:
            log.warning("%d stderr payload(s) of the task could not be published", self.failed)

    def _cut_long(self) -> None:
        """Lines past the longest are sent in pieces, each cut before a UTF-8 character's start."""
        while len(self._partial) > self._max_line:
            cut = _boundary(self._partial, self._max_line)
            self._line(bytes(self._partial[:cut]))
            del self._partial[:cut]

    def _line(self, raw: bytes) -> None:
        self.seq += 1
        if self.relayed_bytes + len(raw) > self.max_bytes or not self._token():
            self.dropped += 1
            return
        if self.dropped:
            if not self._send({"dropped": self.dropped}):
                self.dropped += 1
                return
            self.dropped = 0
        if self._send({"line": raw.decode(errors="replace"), "seq": self.seq}):
            self.relayed_bytes += len(raw)
        else:
            self.dropped += 1

    def _token(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _send(self, payload: dict[str, Any]) -> bool:
        """Queued for the sender; False when the queue is full (Redis is slower than the task)."""
        try:
            self._queue.put_nowait(_json(payload))
        except asyncio.QueueFull:
            return False
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_queued(), name="stderr-relay")
        return True

    async def _send_queued(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty():  # what piled up meanwhile goes in one round trip
                batch.append(self._queue.get_nowait())
            try:
                await self._publish(*batch)
            except Exception as exc:  # Redis away or slow: those lines are lost to the live view only
                if not self.failed:
                    log.warning("could not publish the task's stderr: %s", exc)
                self.failed += len(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _boundary(data: bytearray, limit: int) -> int:
    """Where to cut `data` (longer than limit) at most `limit` bytes in: before the first byte of
    the character that straddles the limit, if it is UTF-8; else at the limit."""
    for cut in range(limit, max(limit - 4, 0), -1):
        if data[cut] & 0xC0 != 0x80:  # not a continuation byte: a character starts here
            return cut
    return limit
