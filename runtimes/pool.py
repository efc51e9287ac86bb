"""Pre-started single-use containers: the container start off the request path.

A pooled container is created with the whole hardening baseline, attached and
started ahead of time; its process blocks reading stdin, so it has run nothing
of anyone's yet. A task claims one (never two tasks per container: after its
one use it is removed), and everything else is as for a cold start.

Containers are shelved by what fixes them at creation: image id, command,
limits, OCI runtime and /tmp size. Each shelf follows demand:

    target = ceil(arrival rate over the last 10 s × container start time × 2)

between the agent's floor and ceiling, within a global cap on pooled containers
and on their memory. A shelf without demand for `idle_s` is emptied.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field

import docker.errors

from runtimes.base import POOL_LABEL, TaskSpec
from runtimes.container import ContainerRuntime, LaunchError, LiveContainer

log = logging.getLogger(__name__)

_RATE_WINDOW_S = 10.0
_HEADROOM = 2.0  # bursts: keep twice what the average rate needs
_FAILURE_PAUSE_S = 30.0


@dataclass(frozen=True)
class PoolConfig:
    enabled: bool = True
    max_containers: int = 32
    max_memory_mb: int = 4096
    idle_s: float = 120.0
    refill_concurrency: int = 2


@dataclass(frozen=True)
class PoolKey:
    image: str
    command: tuple[str, ...] | None
    memory_mb: int
    cpus: float
    pids: int
    tmpfs_mb: int
    oci_runtime: str | None

    @classmethod
    def of(cls, spec: TaskSpec) -> PoolKey:
        return cls(spec.image, tuple(spec.command) if spec.command else None, spec.limits.memory_mb,
                   spec.limits.cpus, spec.limits.pids, spec.tmpfs_mb, spec.oci_runtime)

    @property
    def label(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


@dataclass
class _Shelf:
    key: PoolKey
    template: TaskSpec
    floor: int
    ceiling: int
    idle: deque[LiveContainer] = field(default_factory=deque)
    starting: int = 0
    arrivals: deque[float] = field(default_factory=deque)
    last_demand: float = 0.0
    paused_until: float = 0.0

    def rate(self, now: float) -> float:
        while self.arrivals and now - self.arrivals[0] > _RATE_WINDOW_S:
            self.arrivals.popleft()
        return len(self.arrivals) / _RATE_WINDOW_S


@dataclass
class PoolStats:
    hits: int = 0
    misses: int = 0
    discarded: int = 0
    refills: int = 0
    refill_seconds_total: float = 0.0
    start_s: float = 0.15  # moving average of a container start; a first guess until measured


class ContainerPool:
    def __init__(self, runtime: ContainerRuntime, config: PoolConfig) -> None:
        self.runtime = runtime
        self.config = config
        self.stats = PoolStats()
        self._shelves: dict[PoolKey, _Shelf] = {}
        self._wake = asyncio.Event()
        self._refills = asyncio.Semaphore(config.refill_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._refill_loop(), name="pool-refill")

    async def close(self) -> None:
        """Stop refilling and remove every pooled container."""
        if self._loop_task:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for shelf in self._shelves.values():
            while shelf.idle:
                await self._discard(shelf.idle.popleft(), wait=True)
        self._shelves.clear()

    def snapshot(self) -> dict[str, int | float]:
        return {
            "containers": sum(len(s.idle) for s in self._shelves.values()),
            "starting": sum(s.starting for s in self._shelves.values()),
            "shelves": len(self._shelves),
            "hits": self.stats.hits,
            "misses": self.stats.misses,
            "discarded": self.stats.discarded,
            "refills": self.stats.refills,
            "refill_seconds_total": round(self.stats.refill_seconds_total, 6),
            "container_start_seconds": round(self.stats.start_s, 6),
        }

    async def claim(self, spec: TaskSpec) -> LiveContainer | None:
        """A healthy pre-started container for this task, or None (then start one cold)."""
        if not self.config.enabled:
            return None
        key = PoolKey.of(spec)
        shelf = self._shelves.get(key)
        if shelf is None:
            shelf = self._shelves[key] = _Shelf(key, spec, spec.pool_min, spec.pool_max)
        now = time.monotonic()
        shelf.floor, shelf.ceiling = spec.pool_min, spec.pool_max
        shelf.arrivals.append(now)
        shelf.last_demand = now
        self._wake.set()
        while shelf.idle:
            live = shelf.idle.popleft()
            if await self._healthy(live):
                self.stats.hits += 1
                live.pooled = True
                return live
            await self._discard(live)
        self.stats.misses += 1
        return None

    async def _healthy(self, live: LiveContainer) -> bool:
        state = live.peek()
        if state is None:
            return True  # blocked reading stdin, as it should be
        if state is False:
            return False  # its stream ended: killed from outside, or died
        # It wrote before getting any input: fine if it is still running or ended cleanly.
        try:
            info = (await self.runtime.engine.call(self.runtime.engine.api.inspect_container, live.id))["State"]
        except docker.errors.DockerException:
            return False
        return bool(info.get("Running")) or (info.get("ExitCode") == 0 and not info.get("OOMKilled"))

    async def _discard(self, live: LiveContainer, *, wait: bool = False) -> None:
        self.stats.discarded += 1
        live.close()
        if wait:
            await self.runtime.remove(live.id)
        else:
            self.runtime.remove_later(live.id)

    def _target(self, shelf: _Shelf, now: float) -> int:
        wanted = math.ceil(shelf.rate(now) * self.stats.start_s * _HEADROOM)
        return max(shelf.floor, min(shelf.ceiling, wanted))

    def _room(self, memory_mb: int) -> bool:
        count = sum(len(s.idle) + s.starting for s in self._shelves.values())
        memory = sum((len(s.idle) + s.starting) * s.key.memory_mb for s in self._shelves.values())
        return count < self.config.max_containers and memory + memory_mb <= self.config.max_memory_mb

    async def _refill_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            now = time.monotonic()
            for key, shelf in list(self._shelves.items()):
                if now - shelf.last_demand > self.config.idle_s:
                    while shelf.idle:
                        await self._discard(shelf.idle.popleft())
                    if shelf.starting == 0:
                        del self._shelves[key]
                    continue
                if now < shelf.paused_until:
                    continue
                deficit = self._target(shelf, now) - len(shelf.idle) - shelf.starting
                while deficit > 0 and self._room(key.memory_mb):
                    shelf.starting += 1
                    deficit -= 1
                    task = asyncio.create_task(self._fill(shelf))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

    async def _fill(self, shelf: _Shelf) -> None:
        try:
            async with self._refills:
                t0 = time.monotonic()
                live = await self.runtime.launch(shelf.template, {POOL_LABEL: shelf.key.label})
                elapsed = time.monotonic() - t0
            self.stats.refills += 1
            self.stats.refill_seconds_total += elapsed
            self.stats.start_s = 0.8 * self.stats.start_s + 0.2 * elapsed
            if self._shelves.get(shelf.key) is shelf:
                shelf.idle.append(live)
            else:  # the shelf was retired meanwhile
                await self._discard(live)
        except LaunchError as exc:
            log.error("pool: could not pre-start a container for %s: %s", shelf.key.image[:19], exc)
            shelf.paused_until = time.monotonic() + _FAILURE_PAUSE_S
        finally:
            shelf.starting -= 1
