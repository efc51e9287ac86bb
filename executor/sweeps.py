"""A background sweep: one task per process that calls a coroutine every so often, for work
that must happen some time after a deadline (bodies past their retention, Idempotency-Key
answers past their TTL). A failed sweep is logged and the next tick tries again: a database
blip must not end the loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

MIN_INTERVAL_S, MAX_INTERVAL_S = 0.5, 60.0


def sweep_interval_s(period_s: float) -> float:
    """How often to sweep for a deadline `period_s` after something: a tenth of it, within
    [0.5 s, 60 s], so nothing outlives its deadline by more than about a tenth (a minute at most)."""
    return min(max(period_s / 10, MIN_INTERVAL_S), MAX_INTERVAL_S)


class Sweep:
    """Calls `tick` every `interval_s` between start() and stop()."""

    def __init__(self, name: str, interval_s: float, tick: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.interval_s = interval_s
        self.tick = tick
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception as exc:  # a database blip: the next tick tries again
                log.warning("%s: this sweep failed (the next one tries again): %s", self.name, exc)
