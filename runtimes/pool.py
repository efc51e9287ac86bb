"""Pre-started single-use containers: the container start off the request path.

A pooled container is created with the whole hardening baseline, attached and
started ahead of time; its process blocks reading stdin, so it has run nothing
of anyone's yet. A task claims one (never two tasks per container: after its
one use it is removed), and everything else is as for a cold start.

Containers are shelved by what fixes them at creation: image id, command,
limits, OCI runtime and /tmp size, so agents that run exactly the same share a
shelf; each of them (each agent version: TaskSpec.pool_owner) keeps its own
demand and bounds on it. Each owner wants

    ceil(its arrival rate × container start time × 2)

(the rate from a moving average of the gaps between its arrivals, the start time
a moving average of measured refills) between its own floor and ceiling; a shelf
keeps the sum of its owners' wants (runtimes/pool_sizing.py says why), within a
global cap on pooled containers and on their memory (shelves idle for a while give
way to shelves with demand), and never for more than the worker's free slots (a
busy worker's tasks start cold: see PoolConfig.slots). Between bursts an owner
keeps what its last burst needed; without demand for `idle_s` it keeps nothing.
An owner whose max is 0 never takes a pre-started container, even from a shelf
that others keep full.

An agent that does not wait for its input would run its code before any task
claimed it, on nobody's account: every idle container's CPU time is sampled
each second, and a container that keeps burning CPU while unclaimed (past a
warm-up budget of CPU time) gets its shelf closed (cold starts only) for a while.

The pool is given what it needs, never the runtime: a launcher that starts, reads and removes
containers (runtimes/launcher.py), and the count of tasks running (runtimes/live.py). The
runtime is given the pool as its Claimer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from runtimes.base import POOL_LABEL, TaskSpec
from runtimes.live import LaunchError, LiveContainer, RunningTasks
from runtimes.pool_shelves import IdleContainer, Launcher, PoolConfig, PoolKey, PoolStats, Shelf, ShelfClosed
from runtimes.pool_sizing import eviction_order, retire_idle, target

log = logging.getLogger(__name__)

_FAILURE_PAUSE_S = 30.0
_BUSY_CPU_SHARE = 0.10  # an idle container using more than this of a core is not waiting for input...
_BUSY_STRIKES = 4  # ...for this many samples in a row, half a second apart (a short warm-up is fine)...
# ...once it has used this much CPU unclaimed: a warm-up is judged by its CPU time, not its wall time,
# which a loaded host stretches (a 1 s warm-up then looks busy for 2 s and more).
_WARM_UP_CPU_NS = 2_000_000_000
_TICK_S = 0.5
_QUIET_SAMPLE_S = 5.0  # a container that has proven quiet is sampled less often
# No container waits in the pool longer than this (it is replaced): a runtime's own
# clock that started with the process (wasmtime's -W timeout) can count on it.
MAX_IDLE_AGE_S = 60.0
_BUSY_PAUSE_S = 600.0


class ContainerPool:
    def __init__(self, launcher: Launcher, config: PoolConfig, *, running: RunningTasks | None = None) -> None:
        self.launcher = launcher
        self.config = config
        self.running = running if running is not None else RunningTasks()
        self.stats = PoolStats()
        self._shelves: dict[PoolKey, Shelf] = {}
        self._wake = asyncio.Event()
        self._refills = asyncio.Semaphore(config.refill_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # set, and replaced, whenever a shelf gains a container or closes

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
                await self._discard(shelf.idle.popleft().live, wait=True)
        self._shelves.clear()

    def snapshot(self) -> dict[str, int | float]:
        return {
            "containers": sum(len(s.idle) for s in self._shelves.values()),
            "closed_shelves": sum(1 for s in self._shelves.values() if s.paused_until > time.monotonic()),
            "starting": sum(s.starting for s in self._shelves.values()),
            "shelves": len(self._shelves),
            "hits": self.stats.hits,
            "misses": self.stats.misses,
            "discarded": self.stats.discarded,
            "refills": self.stats.refills,
            "refill_seconds_total": round(self.stats.refill_seconds_total, 6),
            "container_start_seconds": round(self.stats.start_s, 6),
        }

    async def wait_until_ready(self, spec: TaskSpec, count: int = 1) -> None:
        """Until `count` pre-started containers for `spec` wait on its shelf: woken by the pool
        itself whenever a shelf gains a container or closes (for tests and operators' tools, which
        would otherwise poll). Raises ShelfClosed, saying why, when the shelf is closed for what its
        containers did; a shelf closed after a failed start is waited for: it is tried again."""
        key = PoolKey.of(spec)
        while True:
            shelf = self._shelves.get(key)
            if shelf is not None and len(shelf.idle) >= count:
                return
            if shelf is not None and not shelf.retrying and shelf.paused_until > time.monotonic():
                raise ShelfClosed(self.describe(spec))
            await self._changed.wait()

    def describe(self, spec: TaskSpec) -> str:
        """The shelf of `spec` in a line: what waits on it, what starts, and why it was last closed."""
        shelf = self._shelves.get(PoolKey.of(spec))
        if shelf is None:
            return f"no shelf for {spec.image[:19]} {spec.command}"
        closed = shelf.paused_until - time.monotonic()
        why = f"; closed for {closed:.0f} s more: {shelf.paused_why}" if closed > 0 else (
            f"; last closed: {shelf.paused_why}" if shelf.paused_why else "")
        return (f"shelf {shelf.key.label} of {spec.image[:19]} {spec.command}: {len(shelf.idle)} ready,"
                f" {shelf.starting} starting, target {self._target(shelf)}{why}")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def claim(self, spec: TaskSpec) -> LiveContainer | None:
        """A healthy pre-started container for this task, or None (then start one cold)."""
        if not self.config.enabled or spec.pool_max <= 0:
            # Its agent's pool is off: cold, even when a shelf of identical containers is full
            # (another agent's), and no demand of its own.
            return None
        key = PoolKey.of(spec)
        shelf = self._shelves.get(key)
        if shelf is None:
            shelf = self._shelves[key] = Shelf(key, spec)
        shelf.arrive(spec, time.monotonic())
        self._wake.set()
        live = await self._take_healthy(shelf) or await self._await_starting(shelf)
        if live is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        live.pooled = True
        return live

    async def _take_healthy(self, shelf: Shelf) -> LiveContainer | None:
        while shelf.idle:
            idle = shelf.idle.pop()  # the newest: the oldest stay sampled for CPU
            if self._healthy(idle.live):
                # A stats meter's baseline: the CPU it used unclaimed is not the task's.
                idle.live.idle_cpu_ns = idle.cpu_ns
                return idle.live
            await self._discard(idle.live)
        return None

    async def _await_starting(self, shelf: Shelf) -> LiveContainer | None:
        """Under load, when containers are already starting for this shelf (more than tasks
        already waiting for them), take the next one: "a refill and a cold start" become one
        start, which is throughput when the engine is the bottleneck. A lone task starts cold
        instead (alongside the refill, which keeps the shelf deep): the engine has room, and
        that is the faster answer. It never waits longer than a cold start would take."""
        if self.running.count <= 1 or shelf.starting <= len(shelf.waiters):
            return None
        future: asyncio.Future[LiveContainer | None] = asyncio.get_running_loop().create_future()
        shelf.waiters.append(future)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=self.stats.start_s * 1.5)
        except TimeoutError:
            if future.done() and future.result() is not None:
                return future.result()  # handed over just as the wait ended
            future.cancel()
            return None
        except asyncio.CancelledError:
            handed = future.result() if future.done() and not future.cancelled() else None
            if handed is not None:
                await self._discard(handed)  # handed over to a task that is gone
            raise
        finally:
            if future in shelf.waiters:
                shelf.waiters.remove(future)

    def _healthy(self, live: LiveContainer) -> bool:
        # Healthy means still running, silent, and blocked on stdin: anything written
        # before the input would be mixed into the task's output.
        return live.peek() is None

    async def _discard(self, live: LiveContainer, *, wait: bool = False) -> None:
        self.stats.discarded += 1
        live.close()
        if wait:
            await self.launcher.remove(live.id, live.cgroup_parent)
        else:
            self.launcher.remove_later(live.id, live.cgroup_parent)

    def _target(self, shelf: Shelf) -> int:
        return target(shelf.demands.values(), self.stats.start_s)

    def _room(self, memory_mb: int) -> bool:
        count = sum(len(s.idle) + s.starting for s in self._shelves.values())
        memory = sum((len(s.idle) + s.starting) * s.key.memory_mb for s in self._shelves.values())
        return count < self.config.max_containers and memory + memory_mb <= self.config.max_memory_mb

    def _free_slots(self) -> float:
        """Slots of the worker neither running a task nor awaiting a container being pre-started.
        (Idle pooled containers take none: one for another agent would not serve the next task.)"""
        if self.config.slots is None:
            return math.inf
        starting = sum(s.starting for s in self._shelves.values())
        return self.config.slots - self.running.count - starting

    async def _refill_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=_TICK_S)
            self._wake.clear()
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # the pool is an optimisation: it must never stop for good
                log.exception("pool: refill pass failed")

    async def _tick(self) -> None:
        """Sample idle containers' CPU, retire idle shelves, start what demand asks for."""
        await self._sample_cpu()
        now = time.monotonic()
        for key, shelf in list(self._shelves.items()):
            retire_idle(shelf.demands, now, self.config.idle_s)
            if not shelf.demands:
                while shelf.idle:
                    await self._discard(shelf.idle.popleft().live)
                if shelf.starting == 0:
                    del self._shelves[key]
                continue
            while shelf.idle and now - shelf.idle[0].ready_at > MAX_IDLE_AGE_S:
                await self._discard(shelf.idle.popleft().live)  # the oldest first; refilled below
            if now < shelf.paused_until:
                continue
            deficit = self._target(shelf) - len(shelf.idle) - shelf.starting
            while deficit > 0 and self._free_slots() > 0 and await self._make_room(shelf, now):
                shelf.starting += 1
                deficit -= 1
                task = asyncio.create_task(self._fill(shelf))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _make_room(self, shelf: Shelf, now: float) -> bool:
        """Room under the global caps for one more of `shelf`'s containers: at the caps, idle
        containers of the least recently used shelves that have been idle a while go first."""
        while not self._room(shelf.key.memory_mb):
            others = [s for s in self._shelves.values() if s is not shelf and s.idle]
            order = eviction_order(((s.last_demand, i) for i, s in enumerate(others)), shelf.last_demand, now)
            if not order:
                return False
            await self._discard(others[order[0]].idle.popleft().live)
        return True

    def _hand_over(self, shelf: Shelf, live: LiveContainer) -> None:
        """A new container goes to the first task waiting for it, else onto the shelf."""
        while shelf.waiters:
            waiter = shelf.waiters.popleft()
            if not waiter.done():
                waiter.set_result(live)
                return
        shelf.idle.append(IdleContainer(live))
        self._notify()

    async def _sample_cpu(self) -> None:
        """Close the shelf of an agent whose unclaimed containers do anything but wait:
        write output, exit, or keep burning CPU."""
        due: list[tuple[Shelf, IdleContainer]] = []
        now = time.monotonic()
        for shelf in list(self._shelves.values()):
            for idle in list(shelf.idle):
                state = idle.live.peek()
                if state is not None:
                    # Wrote or ended before any input. Its stream is closed at once: the engine
                    # must never be left blocked on output nobody reads.
                    await self._close_shelf(shelf, ("writes output" if state else "exits") + " before any input")
                    break
                # Quiet once proven so; a busy one is followed closely until its warm-up budget is spent.
                proven = idle.samples >= _BUSY_STRIKES + 1 and idle.strikes == 0
                interval = _QUIET_SAMPLE_S if proven else _TICK_S * 0.9
                if now - idle.sampled_at >= interval:
                    due.append((shelf, idle))
        samples = await asyncio.gather(*(self.launcher.idle_cpu_ns(idle.live) for _, idle in due))
        for (shelf, idle), cpu_ns in zip(due, samples, strict=True):
            if cpu_ns is None or idle not in shelf.idle:
                continue  # unreadable now, or claimed meanwhile
            sampled_at = time.monotonic()
            if idle.cpu_ns is not None:
                share = (cpu_ns - idle.cpu_ns) / 1e9 / max(sampled_at - idle.sampled_at, 1e-3)
                idle.strikes = idle.strikes + 1 if share > _BUSY_CPU_SHARE else 0
            idle.cpu_ns, idle.sampled_at = cpu_ns, sampled_at
            idle.samples += 1
            if idle.strikes >= _BUSY_STRIKES and cpu_ns >= _WARM_UP_CPU_NS:
                unclaimed_s = sampled_at - idle.ready_at
                await self._close_shelf(shelf, f"keeps using CPU before any input ({cpu_ns / 1e9:.1f} s of CPU"
                                               f" in its {unclaimed_s:.1f} s unclaimed)")

    async def _close_shelf(self, shelf: Shelf, why: str) -> None:
        log.warning("pool: %s %s %s; cold starts only for %.0f s",
                    shelf.key.image[:19], list(shelf.key.command or []), why, _BUSY_PAUSE_S)
        shelf.paused_until = time.monotonic() + _BUSY_PAUSE_S
        shelf.paused_why, shelf.retrying = why, False
        while shelf.idle:
            await self._discard(shelf.idle.popleft().live)
        self._notify()

    async def _fill(self, shelf: Shelf) -> None:
        try:
            async with self._refills:
                t0 = time.monotonic()
                live = await self.launcher.launch(shelf.template, {POOL_LABEL: shelf.key.label})
                elapsed = time.monotonic() - t0
            self.stats.refills += 1
            self.stats.refill_seconds_total += elapsed
            self.stats.start_s = 0.8 * self.stats.start_s + 0.2 * elapsed
            if self._shelves.get(shelf.key) is shelf and time.monotonic() >= shelf.paused_until:
                self._hand_over(shelf, live)
            else:  # the shelf was retired meanwhile
                await self._discard(live)
        except LaunchError as exc:
            log.error("pool: could not pre-start a container for %s: %s", shelf.key.image[:19], exc)
            shelf.paused_until = time.monotonic() + _FAILURE_PAUSE_S
            shelf.paused_why, shelf.retrying = f"could not pre-start a container: {exc}", True
            self._notify()
            while shelf.waiters:  # they start cold now
                waiter = shelf.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        finally:
            shelf.starting -= 1
