"""Unit tests of the pool's sizing rule and of its decisions, with a launcher made up for the
purpose (no Docker; the pool itself is tested through HTTP and in tests/runtimes/test_metering.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

import runtimes.pool
from runtimes.base import TaskLimits, TaskSpec
from runtimes.live import LiveContainer
from runtimes.pool import ContainerPool
from runtimes.pool_shelves import IdleContainer, PoolConfig, PoolKey, Shelf, ShelfClosed
from runtimes.pool_sizing import (
    EVICT_AFTER_S,
    Demand,
    eviction_order,
    retire_idle,
    target,
)

SPEC = TaskSpec("x", "sha256:abc", ["cat"], b"{}", TaskLimits(64, 1.0, 32, 5.0), 1 << 20, 1 << 20, 16,
                pool_min=1, pool_max=8, pool_owner="agent-a:1")
START_S = 0.15


class FakeLauncher:
    """Stands in for runtimes/launcher.py: nothing is launched unless a test says how."""

    def __init__(self, cpu_ns: int | None = None) -> None:
        self.cpu_ns = cpu_ns
        self.removed: list[str] = []

    async def launch(self, spec: TaskSpec, labels: dict[str, str]) -> LiveContainer:
        raise AssertionError("not launched in these tests")

    async def idle_cpu_ns(self, live: LiveContainer) -> int | None:
        return self.cpu_ns

    async def remove(self, container_id: str, cgroup_parent: str | None = None) -> None:
        self.removed.append(container_id)

    def remove_later(self, container_id: str, cgroup_parent: str | None = None) -> None:
        self.removed.append(container_id)


def demand_after(gaps: list[float], floor: int = 1, ceiling: int = 8) -> Demand:
    demand = Demand(floor, ceiling)
    now = 100.0
    demand.arrive(now)
    for gap in gaps:
        now += gap
        demand.arrive(now)
    return demand


def shelf_of(*specs: TaskSpec, gaps: list[float] | None = None) -> Shelf:
    """A shelf after each spec's owner arrived once, then after `gaps` between the first's arrivals."""
    shelf = Shelf(PoolKey.of(specs[0]), specs[0])
    now = 100.0
    for spec in specs:
        shelf.arrive(spec, now)
    for gap in gaps or []:
        now += gap
        shelf.arrive(specs[0], now)
    return shelf


def test_key_holds_everything_fixed_at_creation() -> None:
    other = TaskSpec("y", "sha256:abc", ["cat"], b"[]", TaskLimits(64, 1.0, 32, 99.0), 1, 1, 16, pool_owner="agent-b:3")
    assert PoolKey.of(SPEC) == PoolKey.of(other)  # stdin, timeout, caps and owner are per task
    bigger = TaskSpec("x", "sha256:abc", ["cat"], b"{}", TaskLimits(128, 1.0, 32, 5.0), 1, 1, 16)
    assert PoolKey.of(bigger) != PoolKey.of(SPEC) and PoolKey.of(bigger).label != PoolKey.of(SPEC).label


def test_rate_follows_the_gaps_between_arrivals() -> None:
    assert demand_after([]).rate() == 0.0
    assert abs(demand_after([0.1] * 20).rate() - 10.0) < 0.5


def test_a_lull_between_bursts_keeps_the_burst_rate() -> None:
    assert abs(demand_after([0.1] * 20 + [30.0]).rate() - 10.0) < 0.5


def test_one_owner_wants_rate_times_start_time_with_headroom_within_its_bounds() -> None:
    assert demand_after([]).wanted(START_S) == 1  # the floor
    assert demand_after([0.125] * 20).wanted(START_S) == 3  # 8/s × 0.15 s × 2 = 2.4
    assert demand_after([0.01] * 50).wanted(START_S) == 8  # the ceiling
    assert demand_after([0.1] * 20, floor=0, ceiling=0).wanted(START_S) == 0


def test_a_shared_shelf_keeps_the_sum_of_its_owners_wants_each_within_its_own_bounds() -> None:
    busy_small = demand_after([0.01] * 50, floor=1, ceiling=3)  # wants 8, capped at its own 3
    quiet = demand_after([], floor=2, ceiling=8)  # wants its floor
    assert target([busy_small, quiet], START_S) == 5
    assert target([quiet, demand_after([], floor=1, ceiling=1)], START_S) == 3
    assert target([], START_S) == 0


def test_an_owner_whose_pool_is_off_adds_nothing_to_a_shared_shelf() -> None:
    off = demand_after([0.01] * 50, floor=0, ceiling=0)
    assert target([off, demand_after([], floor=1, ceiling=8)], START_S) == 1
    assert target([off], START_S) == 0


def test_the_last_claimant_does_not_overwrite_another_owners_bounds() -> None:
    pool = ContainerPool(FakeLauncher(), PoolConfig())
    pool.stats.start_s = START_S
    shelf = shelf_of(replace(SPEC, pool_min=2), replace(SPEC, pool_owner="agent-b:1", pool_min=1, pool_max=1))
    assert set(shelf.demands) == {"agent-a:1", "agent-b:1"}
    assert pool._target(shelf) == 3  # a's floor 2 plus b's 1, not b's bounds for both


def test_owners_without_demand_for_idle_s_are_forgotten_one_by_one() -> None:
    demands = {"a": Demand(1, 8, last_demand=100.0), "b": Demand(2, 8, last_demand=200.0)}
    retire_idle(demands, now=210.0, idle_s=120.0)
    assert set(demands) == {"a", "b"}
    retire_idle(demands, now=221.0, idle_s=120.0)
    assert set(demands) == {"b"}  # a's floor no longer holds the shelf; b's still does


def test_only_shelves_idle_a_while_give_way_least_recently_used_first() -> None:
    now = 1000.0
    shelves = [(now - 1.0, 0), (now - EVICT_AFTER_S - 50, 1), (now - EVICT_AFTER_S - 5, 2), (now - 0.5, 3)]
    assert eviction_order(shelves, for_demand_at=now, now=now) == [1, 2]
    # A shelf never takes from one demanded after it (a stale floor never evicts a fresher one).
    assert eviction_order(shelves, for_demand_at=now - EVICT_AFTER_S - 20, now=now) == [1]


def _live() -> Any:
    """A quiet pre-started container, as far as the pool looks at one."""
    return SimpleNamespace(id="c0ffee", cgroup_parent=None, peek=lambda: None, close=lambda: None, pooled=False,
                           idle_cpu_ns=None)


async def test_a_claim_of_an_owner_whose_pool_is_off_never_takes_from_a_full_shelf() -> None:
    pool = ContainerPool(FakeLauncher(), PoolConfig())
    shelf = pool._shelves[PoolKey.of(SPEC)] = shelf_of(SPEC)
    shelf.idle.append(IdleContainer(_live()))
    off = replace(SPEC, pool_owner="agent-off:1", pool_min=0, pool_max=0)
    assert await pool.claim(off) is None
    assert len(shelf.idle) == 1 and set(shelf.demands) == {"agent-a:1"}  # untouched, no demand of its own
    taken = await pool.claim(replace(SPEC, execution_id="y"))
    assert taken is not None and taken.pooled is True and not shelf.idle


async def test_the_shelves_idle_a_while_make_room_at_the_global_caps() -> None:
    pool = ContainerPool(FakeLauncher(), PoolConfig(max_containers=2))
    discarded: list[Any] = []

    async def discard(live: Any, *, wait: bool = False) -> None:
        discarded.append(live)

    pool._discard = discard  # type: ignore[method-assign]
    now = 1000.0
    stale = pool._shelves[PoolKey.of(SPEC)] = shelf_of(SPEC)
    stale.demands["agent-a:1"].last_demand = now - EVICT_AFTER_S - 1
    stale_containers = [_live(), _live()]
    stale.idle.extend(IdleContainer(live) for live in stale_containers)
    other = replace(SPEC, command=["cat", "-"], pool_owner="agent-b:1")
    live_shelf = pool._shelves[PoolKey.of(other)] = shelf_of(other)
    live_shelf.demands["agent-b:1"].last_demand = now
    assert await pool._make_room(live_shelf, now)
    assert discarded == [stale_containers[0]] and len(stale.idle) == 1  # the oldest first, one for one
    # The stale shelf cannot take it back from a shelf with fresher demand.
    live_shelf.idle.append(IdleContainer(_live()))
    assert not await pool._make_room(stale, now) and len(live_shelf.idle) == 1


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize(("cpu_share", "closed"), [(0.4, False), (1.0, True)])
async def test_a_warm_up_is_judged_by_its_cpu_time_not_its_wall_time(
        monkeypatch: pytest.MonkeyPatch, cpu_share: float, closed: bool) -> None:
    """On a loaded host a 1.2 s-of-CPU warm-up at 40% of a core looks busy for 3 s of samples:
    still a warm-up. A container that keeps a core busy past 2 s of CPU is not."""
    clock = _Clock()
    monkeypatch.setattr(runtimes.pool, "time", clock)
    launcher = FakeLauncher(cpu_ns=0)
    pool = ContainerPool(launcher, PoolConfig())
    shelf = pool._shelves[PoolKey.of(SPEC)] = shelf_of(SPEC)
    idle = IdleContainer(_live(), ready_at=clock.now)
    shelf.idle.append(idle)
    for _ in range(7):  # 3 s of samples, half a second apart
        await pool._sample_cpu()
        clock.now += 0.5
        assert launcher.cpu_ns is not None
        launcher.cpu_ns += int(0.5 * cpu_share * 1e9) if launcher.cpu_ns < 1.2e9 or closed else 0
    await pool._sample_cpu()
    assert (shelf.paused_until > clock.now) is closed, (shelf.paused_until, idle.strikes, launcher.cpu_ns)
    if closed:  # and it says why, with the figures
        assert "keeps using CPU before any input (2.0 s of CPU in its 2.0 s unclaimed)" in pool.describe(SPEC)


async def test_waiting_for_a_ready_container_is_woken_by_the_pool_and_told_why_a_shelf_closed() -> None:
    pool = ContainerPool(FakeLauncher(), PoolConfig())
    shelf = pool._shelves[PoolKey.of(SPEC)] = shelf_of(SPEC)
    waiting = asyncio.ensure_future(pool.wait_until_ready(SPEC))
    await asyncio.sleep(0)
    assert not waiting.done()
    pool._hand_over(shelf, _live())
    await asyncio.wait_for(waiting, 1)  # woken at once, no polling
    waiting = asyncio.ensure_future(pool.wait_until_ready(SPEC, count=2))
    await asyncio.sleep(0)
    await pool._close_shelf(shelf, "writes output before any input")
    with pytest.raises(ShelfClosed, match="writes output before any input"):
        await asyncio.wait_for(waiting, 1)
    # A shelf paused after a failed start is waited for: the pool tries again after the pause.
    shelf.paused_until, shelf.retrying = time.monotonic() + 30, True
    waiting = asyncio.ensure_future(pool.wait_until_ready(SPEC))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    waiting.cancel()
