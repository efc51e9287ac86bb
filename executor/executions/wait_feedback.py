"""How far the shedder's estimate of a job's wait (shedding.py) fell short of the wait jobs had.

The estimate is a model (the jobs ahead over the measured drain rate, at the class's share of
the turn). It is read from a view up to REFRESH_S old, the drain rate lags its window, arrivals
come in bursts and tasks slow down as the machine fills: measured under two and three times the
capacity without this correction, the p99 of accepted normal jobs reached 8.1 s, their task
included, under a 5 s bound (docs/benchmarks.md, "Overload").

So each process remembers, per class, the jobs it admitted: the stream entry id, when, and the
estimate then. Every read of the queue tells which of them a worker has taken since (the
group's `last-delivered-id` is at or past their id: a class's stream is given out in order);
each one's wait, over its estimate, is a sample of the model's error. The estimate the rule
compares with the bound is the model's times the FACTOR_QUANTILE of a class's recent samples,
kept within [1, MAX_FACTOR]: never more lenient than the model (one that overestimates only
sheds a little early), and a correction of its lag that follows the load.

No clock but this process's is used, and nothing is shared between processes: a process with
no samples yet (just started, or every estimate short) uses the model as it is.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

MIN_ESTIMATE_S = 0.5  # shorter ones are not sampled: the view's age (up to REFRESH_S) would be much of them
MAX_SAMPLES = 64  # per class, the newest
SAMPLE_TTL_S = 60.0  # older samples say little about the load now
MIN_SAMPLES = 8  # below this many the factor stays 1
FACTOR_QUANTILE = 0.9
MAX_FACTOR = 3.0
MAX_PENDING = 4096  # admissions not yet seen taken, per class: past this the oldest are forgotten


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id `ms-seq` as a pair that orders like the stream."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Admitted:
    key: tuple[int, int]  # its stream entry id
    at: float  # time.monotonic() at its admission
    estimate_s: float  # the model's, uncorrected


class WaitFeedback:
    """Per class: the jobs admitted here and not seen taken yet, and the ratios of the waits of
    those seen taken to their estimates."""

    def __init__(self) -> None:
        self._pending: dict[str, collections.deque[Admitted]] = collections.defaultdict(
            lambda: collections.deque(maxlen=MAX_PENDING))
        self._ratios: dict[str, collections.deque[tuple[float, float]]] = collections.defaultdict(
            lambda: collections.deque(maxlen=MAX_SAMPLES))
        self._last_read: float | None = None
        self._delivered: dict[str, tuple[int, int]] = {}  # each class's last given-out id seen

    def admitted(self, priority: str, entry_id: str, estimate_s: float, at: float) -> None:
        """A job of `priority` was admitted at `at` (monotonic) and added as `entry_id` of its
        class's stream, when the model expected it to wait `estimate_s`."""
        if estimate_s >= MIN_ESTIMATE_S:
            self._pending[priority].append(Admitted(entry_key(entry_id), at, estimate_s))

    def observe(self, delivered: dict[str, str], at: float) -> None:
        """A read of the queue at `at` (monotonic) found each class's last given-out entry id.
        What was given out since the previous read was given out between the two: its wait is
        counted to the middle of them."""
        taken_at = at if self._last_read is None else (self._last_read + at) / 2
        self._last_read = at
        for priority, last in delivered.items():
            last_key = entry_key(last)
            if last_key < self._delivered.get(priority, last_key):
                # The group was made again (Redis lost its data): what became of the jobs admitted
                # before is unknown, and they are not samples of the model's error.
                self._pending.pop(priority, None)
            self._delivered[priority] = last_key
            pending = self._pending.get(priority)
            if not pending:
                continue
            while pending and pending[0].key <= last_key:
                job = pending.popleft()
                self._ratios[priority].append((at, max(taken_at - job.at, 0.0) / job.estimate_s))

    def factor(self, priority: str, now: float) -> float:
        """What the model's estimate for a job of `priority` is multiplied by (1: no correction)."""
        ratios = self._ratios.get(priority)
        if not ratios:
            return 1.0
        while ratios and now - ratios[0][0] > SAMPLE_TTL_S:
            ratios.popleft()
        if len(ratios) < MIN_SAMPLES:
            return 1.0
        ordered = sorted(ratio for _, ratio in ratios)
        high = ordered[min(len(ordered) - 1, int(FACTOR_QUANTILE * len(ordered)))]
        return min(max(high, 1.0), MAX_FACTOR)
