"""Unit tests of the pool's sizing rule (pure logic; the pool itself is tested through HTTP)."""

from __future__ import annotations

from types import SimpleNamespace

from runtimes.base import TaskSpec
from runtimes.pool import ContainerPool, PoolConfig, PoolKey, _Shelf
from executor.settings import Limits

SPEC = TaskSpec("x", "sha256:abc", ["cat"], b"{}", Limits(64, 1.0, 32, 5.0), 1 << 20, 1 << 20, 16,
                pool_min=1, pool_max=8)


def shelf_after(gaps: list[float]) -> _Shelf:
    shelf = _Shelf(PoolKey.of(SPEC), SPEC, SPEC.pool_min, SPEC.pool_max)
    now = 100.0
    shelf.arrive(now)
    for gap in gaps:
        now += gap
        shelf.arrive(now)
    return shelf


def test_key_holds_everything_fixed_at_creation() -> None:
    other = TaskSpec("y", "sha256:abc", ["cat"], b"[]", Limits(64, 1.0, 32, 99.0), 1, 1, 16)
    assert PoolKey.of(SPEC) == PoolKey.of(other)  # stdin, timeout and caps are per task
    bigger = TaskSpec("x", "sha256:abc", ["cat"], b"{}", Limits(128, 1.0, 32, 5.0), 1, 1, 16)
    assert PoolKey.of(bigger) != PoolKey.of(SPEC) and PoolKey.of(bigger).label != PoolKey.of(SPEC).label


def test_rate_follows_the_gaps_between_arrivals() -> None:
    assert shelf_after([]).rate() == 0.0
    assert abs(shelf_after([0.1] * 20).rate() - 10.0) < 0.5


def test_a_lull_between_bursts_keeps_the_burst_rate() -> None:
    shelf = shelf_after([0.1] * 20 + [30.0])
    assert abs(shelf.rate() - 10.0) < 0.5


def test_target_is_rate_times_start_time_with_headroom_within_bounds() -> None:
    pool = ContainerPool(runtime=None, config=PoolConfig())  # type: ignore[arg-type]
    pool.stats.start_s = 0.15
    assert pool._target(shelf_after([])) == 1  # the floor
    assert pool._target(shelf_after([0.125] * 20)) == 3  # 8/s × 0.15 s × 2 = 2.4
    assert pool._target(shelf_after([0.01] * 50)) == 8  # the ceiling
    quiet = shelf_after([0.1] * 20)
    quiet.floor = quiet.ceiling = 0
    assert pool._target(quiet) == 0


def test_refills_only_for_free_slots() -> None:
    """A busy worker's tasks start cold: no container is pre-started while every slot runs a
    task or awaits one already starting; idle pooled ones (maybe another agent's) take none."""
    runtime = SimpleNamespace(running=0)
    pool = ContainerPool(runtime=runtime, config=PoolConfig(slots=4))  # type: ignore[arg-type]
    assert pool._free_slots() == 4
    runtime.running = 3
    assert pool._free_slots() == 1
    shelf = pool._shelves[PoolKey.of(SPEC)] = shelf_after([])
    shelf.idle.append(None)  # type: ignore[arg-type]
    assert pool._free_slots() == 1
    shelf.starting = 1
    assert pool._free_slots() == 0
    runtime.running = 4
    assert pool._free_slots() < 0
    unbounded = ContainerPool(runtime=runtime, config=PoolConfig())  # type: ignore[arg-type]
    assert unbounded._free_slots() == float("inf")
