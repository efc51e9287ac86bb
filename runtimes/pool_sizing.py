"""How many pre-started containers a shelf keeps: pure logic, no Docker (see runtimes/pool.py).

A shelf holds identical containers (same image, command, limits, runtime), which any agent
that runs exactly those may take. Sharing containers does not share settings: each agent
version on a shelf (its *owner*) keeps its own demand and its own bounds `pool: {min, max}`,
and the shelf keeps the **sum** of what each owner wants, each clamped to its own bounds:

    target = Σ over owners of clamp(ceil(owner's arrival rate × start time × 2), min, max)

The sum, not the max: every owner's tasks take containers from the same shelf, so two owners
arriving at rates r1 and r2 empty it at r1 + r2, and each owner's floor is a promise to that
owner (two owners with min 1 and a shelf of one: the second task of the pair starts cold).
Bounded all the same: by the sum of the owners' ceilings, and by the pool's global caps.

An owner whose max is 0 (its pool is off) never adds demand and never takes a container.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

HEADROOM = 2.0  # bursts: keep twice what the average rate needs
BURST_GAP_S = 1.0  # arrivals further apart than this belong to different bursts
# A shelf idle for this long may lose its containers to a shelf with demand when the global
# caps are reached (the least recently used first): stale floors never starve live agents.
EVICT_AFTER_S = 10.0


@dataclass
class Demand:
    """One owner's (an agent version's) arrivals on one shelf, and its bounds."""

    floor: int
    ceiling: int
    gap_s: float | None = None  # moving average of the time between arrivals
    last_demand: float = 0.0

    def arrive(self, now: float) -> None:
        gap = now - self.last_demand if self.last_demand else None
        # A lull between bursts says nothing about the next burst's rate, and the floor
        # covers slow, steady demand: only gaps inside a burst move the average.
        if gap is not None and gap <= BURST_GAP_S:
            self.gap_s = gap if self.gap_s is None else 0.7 * self.gap_s + 0.3 * gap
        self.last_demand = now

    def rate(self) -> float:
        # Between bursts the owner keeps what its last burst needed (until it is idle_s idle).
        return 0.0 if self.gap_s is None else 1.0 / max(self.gap_s, 1e-3)

    def wanted(self, start_s: float) -> int:
        if self.ceiling <= 0:
            return 0
        return max(self.floor, min(self.ceiling, math.ceil(self.rate() * start_s * HEADROOM)))


def target(demands: Iterable[Demand], start_s: float) -> int:
    """The containers a shelf keeps ready: the sum of its owners' wants (see the module doc)."""
    return sum(demand.wanted(start_s) for demand in demands)


def retire_idle(demands: dict[str | None, Demand], now: float, idle_s: float) -> None:
    """Forget the owners without demand for idle_s: their floors no longer hold the shelf."""
    for owner in [owner for owner, demand in demands.items() if now - demand.last_demand > idle_s]:
        del demands[owner]


def eviction_order(shelves: Iterable[tuple[float, int]], for_demand_at: float, now: float) -> list[int]:
    """Which shelves (given as (last demand, index)) may give up an idle container to a shelf last
    demanded at `for_demand_at`: those idle for EVICT_AFTER_S and demanded before it, the least
    recently used first. Live shelves never lose containers to each other (no thrashing)."""
    cutoff = min(for_demand_at, now - EVICT_AFTER_S)
    return [index for demanded_at, index in sorted(shelves) if demanded_at < cutoff]
