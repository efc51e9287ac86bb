"""The pool's parts: what it is given (a Launcher), how it is configured, and its shelves of
idle pre-started containers, one shelf per PoolKey (runtimes/pool.py says how they are kept)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from runtimes.base import TaskSpec
from runtimes.live import LiveContainer
from runtimes.pool_sizing import Demand


class Launcher(Protocol):
    """What the pool is given to start, read and remove containers (runtimes/launcher.py)."""

    async def launch(self, spec: TaskSpec, labels: dict[str, str]) -> LiveContainer: ...
    async def idle_cpu_ns(self, live: LiveContainer) -> int | None: ...  # its CPU time so far, None: unreadable
    async def remove(self, container_id: str, cgroup_parent: str | None = None) -> None: ...
    def remove_later(self, container_id: str, cgroup_parent: str | None = None) -> None: ...


class ShelfClosed(Exception):
    """The pool closed a shelf for what its containers did before any input (wait_until_ready)."""


@dataclass(frozen=True)
class PoolConfig:
    enabled: bool = True
    max_containers: int = 32
    max_memory_mb: int = 4096
    idle_s: float = 120.0
    refill_concurrency: int = 2
    # The tasks its worker runs at once (None: no bound). A container is pre-started only while a
    # slot is free: with every slot busy no task can take it before one ends, and meanwhile
    # its start competes with the running tasks for the engine (measured at saturation on this
    # 2-core host: pool on cost ~6 ms of worker CPU and ~8 ms of engine CPU per execution more
    # than pool off, for no throughput).
    slots: int | None = None


@dataclass(frozen=True)
class PoolKey:
    image: str
    command: tuple[str, ...] | None
    memory_mb: int
    cpus: float
    pids: int
    tmpfs_mb: int
    oci_runtime: str | None
    egress: bool = False  # its own egress socket, bound to a task at the claim
    environment: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, spec: TaskSpec) -> PoolKey:
        return cls(spec.image, tuple(spec.command) if spec.command else None, spec.limits.memory_mb,
                   spec.limits.cpus, spec.limits.pids, spec.tmpfs_mb, spec.oci_runtime,
                   spec.egress is not None, spec.environment)

    @property
    def label(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


@dataclass
class IdleContainer:
    live: LiveContainer
    ready_at: float = field(default_factory=time.monotonic)
    cpu_ns: int | None = None
    sampled_at: float = 0.0
    samples: int = 0
    strikes: int = 0


@dataclass
class Shelf:
    key: PoolKey
    template: TaskSpec
    # Each owner's (agent version's) demand and bounds: identical containers, separate settings.
    demands: dict[str | None, Demand] = field(default_factory=dict)
    idle: deque[IdleContainer] = field(default_factory=deque)
    starting: int = 0
    # Tasks that found the shelf empty while containers were starting for it: each
    # takes the next one that starts, rather than starting one more (see claim).
    waiters: deque[asyncio.Future[LiveContainer | None]] = field(default_factory=deque)
    paused_until: float = 0.0
    paused_why: str = ""  # why it was last closed
    retrying: bool = False  # closed after a failed start (it is tried again), not for its containers

    def arrive(self, spec: TaskSpec, now: float) -> None:
        demand = self.demands.get(spec.pool_owner)
        if demand is None:
            demand = self.demands[spec.pool_owner] = Demand(spec.pool_min, spec.pool_max)
        demand.floor, demand.ceiling = spec.pool_min, spec.pool_max
        demand.arrive(now)

    @property
    def last_demand(self) -> float:
        return max((demand.last_demand for demand in self.demands.values()), default=0.0)


@dataclass
class PoolStats:
    hits: int = 0
    misses: int = 0
    discarded: int = 0
    refills: int = 0
    refill_seconds_total: float = 0.0
    start_s: float = 0.15  # moving average of a container start; a first guess until measured
