"""Load shedding at admission: refuse new work while the queue would make it wait too long.

A worker takes a job only when it has a free slot (executor/executions/worker.py), so the jobs
of the stream that the consumer group has not given out yet are the ones waiting for a slot.
The wait a job accepted now can expect, in a first-in first-out stream, is

    expected wait = max(waiting / drain rate, head wait)

- `waiting`: jobs not given out yet (XINFO GROUPS `lag`, else the stream's length less the
  group's `pending`);
- `drain rate`: jobs given out per second while jobs were waiting (every slot busy), over
  the last RATE_WINDOW_S, from the group's `entries-read` counter sampled by this process;
- `head wait`: how long the oldest waiting job has waited (its entry id is its enqueue time):
  what counts when nothing was given out lately (no rate, or no worker).

Past EXECUTOR_MAX_QUEUE_WAIT_S the submission is refused: 503 queue_full with Retry-After = the
excess, within [1, 30] s. Jobs being run are not counted (a long task does not make the queue
look full). The head wait alone would not do: under k times the capacity the queue fills k times
faster than its head ages, and accepted work would wait about k times the bound.

The stream is read at most once per REFRESH_S per process (XINFO GROUPS and XLEN in one round
trip, then one XRANGE for the head when a job waits), not per submission: a decision is at most
that stale.

The model lags (the view's age, the rate's window, bursts, tasks slowing as the machine fills):
the estimate compared with the bound is the model's times a factor learned from the waits the
jobs admitted here had, against what the model said at their admission (wait_feedback.py).

With priority classes (queue/classes.py: a stream each) the workers serve the classes in a turn
of six places (high 3, normal 2, low 1), and a class with nothing waiting gives its places away.
So a class's drain is its share of the whole: its places over those of the classes that have
jobs waiting (itself counted), and a job of class c can expect

    expected wait(c) = max((waiting(c) + 1/2) / (drain rate × share(c)), head wait(c))

(a class that had jobs waiting in the last COMPETING_S counts as waiting in the shares: when the
high class's queue empties for a moment, normal jobs admitted on a share of 1 would wait twice
what they were told as soon as it is back)

(the +1/2: the class's takes come spread over the turn, and the new job goes at the next one
after those ahead of it, on average half an interval in; a lone low job behind busy classes
waits for low's one place in six, not 0)

(one estimate for all classes would be wrong for each: under overload the high class waits far
less than the total predicts, and the normal class far more, past its bound). Each class also
has its own share of the bound (CLASS_BOUND): under overload the low class is shed first, the
high class last. 0 turns the rule off; EXECUTOR_MAX_QUEUE_DEPTH stays the hard cap on the stream.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from executor.executions.wait_feedback import WaitFeedback
from executor.queue.classes import TURN, JobQueues, split
from executor.queue.stream import JobQueue
from executor.records.principals import DEFAULT_PRIORITY

REFRESH_S = 0.2  # how stale a process's view of the queue may be
RATE_WINDOW_S = 5.0  # the drain rate is measured over about this long
COMPETING_S = 5.0  # a class seen waiting this recently still takes its places in the turn
MIN_RATE_SPAN_S = 1.0  # and not before this long of it was seen with jobs waiting
MAX_RETRY_AFTER_S = 30.0
# Each priority class's bound, as a share of EXECUTOR_MAX_QUEUE_WAIT_S: as the expected wait
# grows, low is refused first (at half the bound), then normal, and high last (at twice it).
CLASS_BOUND = {"high": 2.0, "normal": 1.0, "low": 0.5}
PLACES = {name: TURN.count(name) for name in CLASS_BOUND}  # each class's places in the workers' turn


def expected_wait_s(waiting: int, drain_per_s: float | None, head_wait_s: float | None) -> float:
    """How long a job accepted now can expect to wait for a worker (see the module's doc)."""
    by_rate = waiting / drain_per_s if waiting and drain_per_s else 0.0
    return max(by_rate, head_wait_s or 0.0, 0.0)


def class_share(priority: str, waiting: dict[str, int]) -> float:
    """The share of the drain a job of `priority` gets: its class's places in the turn over those
    of every class with jobs waiting, its own counted (queue/classes.py: an empty class gives its
    places away)."""
    busy = {name for name, count in waiting.items() if count} | {priority}
    return PLACES[priority] / sum(PLACES[name] for name in busy)


def retry_after_s(expected_s: float, max_wait_s: float) -> float | None:
    """The pure rule: None to admit, else the Retry-After of a refusal (0 for max_wait_s: no bound)."""
    if max_wait_s <= 0 or expected_s <= max_wait_s:
        return None
    return min(MAX_RETRY_AFTER_S, max(1.0, expected_s - max_wait_s))


class DrainRate:
    """Jobs given out per second while jobs were waiting, from samples of the group's counter of
    them (`entries-read`). Only intervals that began with a job waiting count: then every slot
    was busy, and what was given out is what the workers can take. A rate measured while they
    were idle would be the arrival rate, and a burst after a quiet spell would look like hours
    of work."""

    def __init__(self, window_s: float = RATE_WINDOW_S, min_busy_s: float = MIN_RATE_SPAN_S) -> None:
        self.window_s, self.min_busy_s = window_s, min_busy_s
        self._last: tuple[float, int, int] | None = None  # at, counter, waiting
        self._busy: collections.deque[tuple[float, float, int]] = collections.deque()  # end, span, given out
        self._known: float | None = None  # the last rate measured, for the start of the next busy spell

    def add(self, at: float, count: int | None, waiting: int) -> float | None:
        """Record the counter and the jobs waiting at `at` (monotonic seconds); the rate over the
        busy intervals of the last window_s. While less than min_busy_s of them is seen (the first
        second of a burst after a quiet spell): the last rate measured, None if there never was one
        (without it, a burst's first second would be admitted on the head's wait alone, which
        hardly grows yet, and those jobs would wait past the bound)."""
        last, self._last = self._last, (at, count, waiting) if count is not None else None
        if count is None or (last is not None and count < last[1]):
            self._busy.clear()  # unknown, or the group was made again (Redis lost its data)
            self._known = None
        elif last is not None and last[2] > 0 and 0 < at - last[0] <= self.window_s:
            self._busy.append((at, at - last[0], count - last[1]))
        while self._busy and at - self._busy[0][0] > self.window_s:
            self._busy.popleft()
        busy = sum(span for _, span, _ in self._busy)
        if busy >= self.min_busy_s:
            self._known = sum(given for _, _, given in self._busy) / busy
            return self._known
        return self._known


@dataclass(frozen=True)
class QueueView:
    """What one read of the queue found, per priority class (a single stream: all normal)."""

    waiting: dict[str, int]  # jobs not given out yet
    entries_read: int  # the groups' counter of jobs given out, summed
    heads: dict[str, float]  # the oldest waiting job's enqueue time (Unix seconds), where one waits
    delivered: dict[str, str] = field(default_factory=dict)  # the last entry id given out, per class


@dataclass(frozen=True)
class Snapshot:
    """The queue as one read saw it."""

    waiting: dict[str, int]  # jobs not given out yet, per class
    drain_per_s: float | None  # of all classes together
    heads: dict[str, float]  # per class, Unix seconds; absent: nothing of it waits
    read_at: float  # time.monotonic()
    # Classes seen with jobs waiting within the last COMPETING_S, if none waits now: they count
    # in the shares (a class's drain over the next seconds is shared with those likely to be
    # back, not only with those waiting at this instant).
    competing: frozenset[str] = frozenset()

    def expected_wait_s(self, now_s: float, priority: str = DEFAULT_PRIORITY) -> float:
        """For a job of `priority` accepted now: behind its own class, at its class's share. While
        jobs wait (every slot busy), a class's takes come at its share of the drain, spread over
        the turn: the new job, with w of its class ahead, goes at the (w + 1)-th of them, on
        average w + 1/2 of their intervals from now. (With nothing waiting a slot is free: 0.)"""
        head = self.heads.get(priority)
        head_wait = now_s - head if head is not None else 0.0
        if not self.drain_per_s or not any(self.waiting.values()):
            return max(head_wait, 0.0)
        busy = self.waiting | {name: 1 for name in self.competing if not self.waiting.get(name)}
        drain = self.drain_per_s * class_share(priority, busy)
        return max((self.waiting.get(priority, 0) + 0.5) / drain, head_wait, 0.0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _streams(queue: JobQueues | JobQueue) -> dict[str, JobQueue]:
    """The streams behind a queue by class: each priority class's (queue/classes.py), or the one."""
    return dict(queue.queues) if isinstance(queue, JobQueues) else {DEFAULT_PRIORITY: queue}


async def read_queue(queue: JobQueues | JobQueue) -> QueueView:
    """Per class, the jobs waiting and the oldest waiting one's enqueue time; and the groups'
    entries-read counters summed. A stream or group not made yet has nothing waiting."""
    classes = _streams(queue)
    streams = list(classes.values())
    client = queue.client
    async with client.pipeline(transaction=False) as pipe:
        for each in streams:
            pipe.xinfo_groups(each.stream)
            pipe.xlen(each.stream)
        replies = await pipe.execute(raise_on_error=False)
    waiting: dict[str, int] = {}
    delivered: dict[str, str] = {}
    entries_read, after = 0, []
    for index, (name, each) in enumerate(classes.items()):
        groups, length = replies[2 * index], replies[2 * index + 1]
        if isinstance(groups, ResponseError) and "no such key" in str(groups).lower():
            continue  # no stream yet
        for reply in (groups, length):
            if isinstance(reply, Exception):
                raise reply
        group = next((g for g in groups if _text(g.get("name")) == each.group), None)
        if group is None:
            continue
        lag = group.get("lag")
        count = int(lag) if lag is not None else max(0, int(length) - int(group.get("pending") or 0))
        waiting[name] = count
        delivered[name] = _text(group.get("last-delivered-id") or "0-0")
        entries_read += int(group.get("entries-read") or 0)  # None: nothing read from it yet
        if count:
            after.append((name, each.stream, delivered[name]))
    if not after:
        return QueueView(waiting, entries_read, {}, delivered)
    async with client.pipeline(transaction=False) as pipe:
        for _, stream, last in after:
            pipe.xrange(stream, f"({last}", "+", count=1)
        firsts = await pipe.execute()
    heads = {name: int(_text(first[0][0]).split("-", 1)[0]) / 1000
             for (name, _, _), first in zip(after, firsts, strict=True) if first}
    return QueueView(waiting, entries_read, heads, delivered)


class Shedder:
    """One process's admission rule, with its cached view of the queue."""

    def __init__(self, queue: JobQueues | JobQueue, max_wait_s: float, *, refresh_s: float = REFRESH_S) -> None:
        self.queue = queue
        self.max_wait_s = max_wait_s
        self.refresh_s = refresh_s
        self.rate = DrainRate()
        self.feedback = WaitFeedback()
        self._waited_at: dict[str, float] = {}  # each class's last read with a job of it waiting
        self._snapshot: Snapshot | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> Snapshot | None:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() - snapshot.read_at < self.refresh_s:
            return snapshot
        return None

    async def snapshot(self) -> Snapshot:
        """The cached view, read again when older than refresh_s (one reader at a time: the others
        wait for its answer rather than asking Redis too)."""
        snapshot = self._fresh()
        if snapshot is not None:
            return snapshot
        async with self._lock:
            snapshot = self._fresh()
            if snapshot is None:
                read_at = time.monotonic()
                view = await read_queue(self.queue)
                drain = self.rate.add(read_at, view.entries_read, sum(view.waiting.values()))
                self.feedback.observe(view.delivered, read_at)
                self._waited_at |= {name: read_at for name, count in view.waiting.items() if count}
                competing = frozenset(name for name, at in self._waited_at.items() if read_at - at <= COMPETING_S)
                snapshot = self._snapshot = Snapshot(view.waiting, drain, view.heads, read_at, competing)
            return snapshot

    async def retry_after_s(self, priority: str = "normal") -> float | None:
        """None to admit a job of this class, else the Retry-After of a 503 queue_full. Raises
        RedisError when the stream cannot be read."""
        return (await self.assess(priority))[0]

    async def assess(self, priority: str = "normal") -> tuple[float | None, float]:
        """(retry_after_s's answer, the model's estimate uncorrected: for `admitted`)."""
        if self.max_wait_s <= 0:
            return None, 0.0
        model = (await self.snapshot()).expected_wait_s(time.time(), priority)
        expected = model * self.feedback.factor(priority, time.monotonic())
        return retry_after_s(expected, self.bound_s(priority)), model

    def admitted(self, priority: str, entry_id: str, estimate_s: float) -> None:
        """A job admitted on the model's `estimate_s` went into the stream as `entry_id` (as the
        queue gave it out: a class's own, or prefixed by its class)."""
        if self.max_wait_s > 0:
            self.feedback.admitted(priority, split(entry_id)[1], estimate_s, time.monotonic())

    def bound_s(self, priority: str) -> float:
        """The longest a job of this class may expect to wait before it is refused."""
        return self.max_wait_s * CLASS_BOUND[priority]
