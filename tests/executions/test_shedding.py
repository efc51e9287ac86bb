"""Unit tests of the admission's bound on queue wait (executor/executions/shedding.py): the pure
rule, the drain rate, and the cached view of the queue over a fake Redis (pure logic, no Redis)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.exceptions import ResponseError

from executor.errors import ConfigurationError
from executor.executions.shedding import (
    COMPETING_S,
    MAX_RETRY_AFTER_S,
    DrainRate,
    QueueView,
    Shedder,
    Snapshot,
    class_share,
    expected_wait_s,
    read_queue,
    retry_after_s,
)
from executor.executions.wait_feedback import MAX_FACTOR, MIN_SAMPLES, SAMPLE_TTL_S, WaitFeedback, entry_key
from executor.queue.classes import JobQueues
from executor.queue.stream import JobQueue
from executor.settings import load_settings


@pytest.mark.parametrize("waiting, drain, head, expected", [
    (0, None, None, 0.0),  # nothing waits
    (0, 10.0, None, 0.0),
    (50, 10.0, 1.0, 5.0),  # 50 jobs ahead at 10/s: 5 s, though the head waited only 1 s
    (50, None, 1.0, 1.0),  # no rate measured yet: the head's wait
    (3, 10.0, 8.0, 8.0),  # nothing taken lately (the head waited 8 s): the head's wait
    (3, 10.0, -0.5, 0.3),  # a clock a little behind the entry's
])
def test_the_expected_wait(waiting: int, drain: float | None, head: float | None, expected: float) -> None:
    assert expected_wait_s(waiting, drain, head) == pytest.approx(expected)


@pytest.mark.parametrize("expected, bound, answer", [
    (0.0, 5.0, None),
    (5.0, 5.0, None),  # exactly the bound: still admitted
    (5.5, 5.0, 1.0),  # just past it: come back in a second (at least 1)
    (10.0, 5.0, 5.0),  # 5 s past it: the excess
    (500.0, 5.0, MAX_RETRY_AFTER_S),  # far past it: capped
    (500.0, 0.0, None),  # 0: no bound
])
def test_the_rule(expected: float, bound: float, answer: float | None) -> None:
    assert retry_after_s(expected, bound) == answer


def test_the_setting() -> None:
    assert load_settings({}).max_queue_wait_s == 5.0
    assert load_settings({"EXECUTOR_MAX_QUEUE_WAIT_S": "0"}).max_queue_wait_s == 0.0
    with pytest.raises(ConfigurationError, match="EXECUTOR_MAX_QUEUE_WAIT_S"):
        load_settings({"EXECUTOR_MAX_QUEUE_WAIT_S": "-1"})


def test_the_drain_rate_counts_only_what_was_given_out_while_jobs_waited() -> None:
    rate = DrainRate(window_s=5.0, min_busy_s=1.0)
    assert rate.add(0.0, 100, 0) is None
    # Idle: 2 given out per second with nothing waiting says nothing about the workers.
    for i in range(1, 11):
        assert rate.add(i * 0.5, 100 + i, 0) is None
    # A burst: jobs wait from here on; 25/s given out.
    at, count = 5.0, 110
    assert rate.add(at, count, 40) is None
    for _ in range(4):
        at, count = at + 0.2, count + 5
        assert rate.add(at, count, 40) is None  # less than a second of it seen yet
    at, count = at + 0.2, count + 5
    assert rate.add(at, count, 40) == pytest.approx(25.0)
    # Old intervals leave the window: the rate follows the workers.
    for _ in range(50):
        at, count = at + 0.2, count + 2
        last = rate.add(at, count, 40)
    assert last == pytest.approx(10.0)
    assert rate.add(at + 0.2, count - 500, 40) is None  # the counter went back: the group is new


def test_a_new_burst_starts_from_the_last_rate_measured() -> None:
    """The first second of a burst after a quiet spell has no rate of its own yet: the last one
    measured stands in (the workers did not change), rather than the head's wait alone."""
    rate = DrainRate(window_s=5.0, min_busy_s=1.0)
    at, count = 0.0, 0
    for waiting in [30] * 7 + [0]:  # the burst's jobs all given out by the last read
        at, count = at + 0.2, count + 4
        last = rate.add(at, count, waiting)
    assert last == pytest.approx(20.0)
    for _ in range(50):  # quiet: nothing waits for 10 s
        at, count = at + 0.2, count + 1
        rate.add(at, count, 0)
    assert rate.add(at + 0.2, count + 1, 12) == pytest.approx(20.0)  # a burst begins
    assert rate.add(at + 0.4, count - 100, 12) is None  # the group made again: nothing known


def test_an_unknown_counter_gives_no_rate() -> None:
    rate = DrainRate()
    assert rate.add(0.0, None, 10) is None
    assert rate.add(2.0, None, 10) is None


class FakeRedis:
    """XINFO GROUPS, XLEN and XRANGE of one stream in pipelines, counted by round trip."""

    def __init__(self, entries: list[str], last_delivered: str | None, *, entries_read: int | None = 0,
                 lag: int | None = None, pending: int = 0, stream: bool = True) -> None:
        self.entries, self.last_delivered, self.stream = entries, last_delivered, stream
        self.entries_read, self.lag, self.pending = entries_read, lag, pending
        self.round_trips = 0

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    def xinfo_groups(self) -> list[dict[str, Any]]:
        if not self.stream:
            raise ResponseError("no such key")
        if self.last_delivered is None:
            return []
        return [{"name": b"other", "last-delivered-id": b"0-0", "lag": 0, "pending": 0, "entries-read": 7},
                {"name": b"workers", "last-delivered-id": self.last_delivered.encode(), "lag": self.lag,
                 "pending": self.pending, "entries-read": self.entries_read}]

    def xlen(self) -> int:
        return len(self.entries)

    def xrange(self, min: str, max: str, count: int) -> list[tuple[bytes, dict]]:
        assert min.startswith("(") and max == "+" and count == 1  # strictly past the last delivered
        key = [int(part) for part in min[1:].split("-")]
        later = [e for e in self.entries if [int(part) for part in e.split("-")] > key]
        return [(later[0].encode(), {b"execution_id": b"x"})] if later else []


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis, self.calls = redis, []

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return lambda stream, *args, **kwargs: self.calls.append(lambda: getattr(self.redis, name)(*args, **kwargs))

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        self.redis.round_trips += 1
        replies = []
        for call in self.calls:
            try:
                replies.append(call())
            except ResponseError as exc:
                if raise_on_error:
                    raise
                replies.append(exc)
        return replies


def queue_of(redis: FakeRedis) -> JobQueue:
    return JobQueue(redis)  # type: ignore[arg-type]


async def test_waiting_jobs_and_the_head() -> None:
    entries = ["1000-0", "2000-0", "2000-1", "3500-0"]
    # nothing given out
    assert await read_queue(queue_of(FakeRedis(entries, "0-0", lag=4))) == QueueView(
        {"normal": 4}, 0, {"normal": 1.0}, {"normal": "0-0"})
    # 1000-0 and 2000-0 are running (pending); the lag unknown: the length less the pending.
    assert await read_queue(queue_of(FakeRedis(entries, "2000-0", lag=None, pending=2, entries_read=2))) == (
        QueueView({"normal": 2}, 2, {"normal": 2.0}, {"normal": "2000-0"}))
    assert await read_queue(queue_of(FakeRedis(entries, "3500-0", lag=0, pending=4))) == QueueView(
        {"normal": 0}, 0, {}, {"normal": "3500-0"})
    assert await read_queue(queue_of(FakeRedis(entries, None))) == QueueView({}, 0, {})  # no group yet
    assert await read_queue(queue_of(FakeRedis([], None, stream=False))) == QueueView({}, 0, {})  # no stream yet


async def test_the_queue_is_read_at_most_once_per_refresh() -> None:
    redis = FakeRedis(["1000-0"], "0-0", lag=1)  # enqueued 1 s after the epoch: waited decades
    shedder = Shedder(queue_of(redis), 5.0, refresh_s=3600)
    for _ in range(11):
        assert await shedder.retry_after_s() == MAX_RETRY_AFTER_S
    assert redis.round_trips == 2  # one pipeline and one XRANGE for all eleven decisions

    redis.last_delivered, redis.lag, redis.pending = "1000-0", 0, 1  # taken by a worker
    shedder.refresh_s = 0
    assert await shedder.retry_after_s() is None
    assert redis.round_trips == 3  # nothing waits: no XRANGE


async def test_no_bound_reads_nothing() -> None:
    redis = FakeRedis(["1000-0"], "0-0", lag=1)
    assert await Shedder(queue_of(redis), 0.0).retry_after_s() is None
    assert redis.round_trips == 0


async def test_with_priority_classes_the_streams_are_summed() -> None:
    # The fake answers alike for every stream: each class has the same two jobs waiting.
    redis = FakeRedis(["1000-0", "2000-0", "3000-0"], "1000-0", lag=2, pending=1, entries_read=1)
    classes = JobQueues(redis)  # type: ignore[arg-type]
    assert len(classes.queues) == 3
    assert await read_queue(classes) == QueueView({"high": 2, "normal": 2, "low": 2}, 3,
                                                  {"high": 2.0, "normal": 2.0, "low": 2.0},
                                                  {"high": "1000-0", "normal": "1000-0", "low": "1000-0"})
    assert redis.round_trips == 2  # one pipeline for every stream's counts, one for their heads


@pytest.mark.parametrize(("expected", "refused"), [
    (2.0, []), (4.0, ["low"]), (8.0, ["low", "normal"]), (12.0, ["low", "normal", "high"]),
])
async def test_the_lowest_class_is_shed_first(expected: float, refused: list[str]) -> None:
    """Each class's bound is its share of EXECUTOR_MAX_QUEUE_WAIT_S (5 s here): low 2.5 s,
    normal 5 s, high 10 s."""
    shedder = Shedder(queue_of(FakeRedis([], None)), 5.0, refresh_s=3600)
    # Six jobs a second given out, three high, two normal, one low: each class waits `expected` s.
    shedder._snapshot = Snapshot({"high": 3 * int(expected), "normal": 2 * int(expected), "low": int(expected)},
                                 6.0, {}, time.monotonic())
    answers = {p: await shedder.retry_after_s(p) for p in ("high", "normal", "low")}
    assert sorted(p for p, answer in answers.items() if answer is not None) == sorted(refused), answers


def test_each_class_drains_at_its_share_of_the_turn() -> None:
    """high 3, normal 2, low 1 places of six; a class with nothing waiting gives its places away."""
    everyone = {"high": 5, "normal": 5, "low": 5}
    assert [class_share(p, everyone) for p in ("high", "normal", "low")] == pytest.approx([3 / 6, 2 / 6, 1 / 6])
    assert class_share("normal", {"high": 0, "normal": 5, "low": 0}) == 1.0
    assert class_share("low", {"high": 0, "normal": 7, "low": 0}) == pytest.approx(1 / 3)  # itself counted
    assert class_share("normal", {"high": 1}) == pytest.approx(2 / 5)


def test_a_class_waits_behind_its_own_jobs_at_its_own_share() -> None:
    """Under overload the high class is served far faster than the queue's total suggests and the
    normal class slower: one estimate for all would let normal jobs wait past their bound. Ten
    high and forty normal jobs waiting, six jobs a second given out: a high job waits 10/3 s,
    a normal one 40/3 s, a low one, the first of its class, half an interval of its 1/6 share
    (each also half an interval in: the next take of its class comes on average that far off)."""
    snapshot = Snapshot({"high": 10, "normal": 40, "low": 0}, 6.0, {}, time.monotonic())
    now = time.time()
    assert snapshot.expected_wait_s(now, "high") == pytest.approx(10.5 / 3.6)  # 3 of 5 places: 3.6 a second
    assert snapshot.expected_wait_s(now, "normal") == pytest.approx(40.5 / 2.4)  # 2 of 5 places
    assert snapshot.expected_wait_s(now, "low") == pytest.approx(0.5 / 1.0)  # 1 of 6 places, itself counted
    # Nothing waiting anywhere: a slot is free, whatever the last drain rate.
    idle = Snapshot({"high": 0, "normal": 0, "low": 0}, 6.0, {}, time.monotonic())
    assert idle.expected_wait_s(now, "low") == 0.0
    # The oldest waiting job of the class counts when it waited longer than the rate predicts.
    aged = Snapshot({"normal": 1}, 6.0, {"normal": now - 9.0}, time.monotonic())
    assert aged.expected_wait_s(now, "normal") == pytest.approx(9.0, abs=0.1)
    assert aged.expected_wait_s(now, "high") == pytest.approx(0.5 / (6.0 * 3 / 5))  # not its class's head


async def test_the_estimate_is_corrected_by_the_waits_admitted_jobs_had() -> None:
    """Jobs admitted on an estimate of 2 s that waited 3 s: past enough of them the rule uses the
    model's estimate times 1.5, and refuses a normal job the model alone would admit (5 s bound)."""
    redis = FakeRedis([], "0-0", lag=0)
    shedder = Shedder(queue_of(redis), 5.0, refresh_s=0)
    snapshot = Snapshot({"normal": 23}, 6.0, {}, time.monotonic())  # (23 + 1/2) / 6: about 3.9 s
    shedder._snapshot, shedder.refresh_s = snapshot, 3600
    assert await shedder.assess("normal") == (None, pytest.approx(23.5 / 6))
    now = time.monotonic()
    for seq in range(10):
        shedder.feedback.admitted("normal", f"5000-{seq}", 2.0, now - 3.0)
    shedder.feedback.observe({"normal": "5000-9"}, now)
    assert shedder.feedback.factor("normal", now) == pytest.approx(1.5)
    retry, model = await shedder.assess("normal")
    assert model == pytest.approx(23.5 / 6) and retry == pytest.approx(1.0)  # 5.9 s: refused
    assert shedder.feedback.factor("high", now) == 1.0  # another class learned nothing


def test_only_jobs_given_out_are_sampled_each_once() -> None:
    feedback = WaitFeedback()
    for seq, estimate in enumerate([2.0, 2.0, 0.3, 4.0]):  # a short estimate is not sampled
        feedback.admitted("low", f"100-{seq}", estimate, 0.0)
    feedback.admitted("low", "101-0", 2.0, 0.0)
    feedback.observe({"low": "99-0"}, 1.0)  # none of them yet
    feedback.observe({"low": "100-3"}, 3.0)  # given out between the reads: waited 2 s
    assert [round(r, 3) for _, r in feedback._ratios["low"]] == [1.0, 1.0, 0.5]
    feedback.observe({"low": "100-3", "normal": "7-0"}, 4.0)  # nothing new
    assert len(feedback._ratios["low"]) == 3 and "normal" not in feedback._ratios


def test_the_factor_is_a_high_quantile_within_bounds_and_forgets() -> None:
    feedback = WaitFeedback()
    assert feedback.factor("normal", 0.0) == 1.0
    for _ in range(MIN_SAMPLES - 1):
        feedback._ratios["normal"].append((0.0, 2.0))
    assert feedback.factor("normal", 0.0) == 1.0  # too few samples
    feedback._ratios["normal"].append((0.0, 2.0))
    assert feedback.factor("normal", 0.0) == 2.0
    feedback._ratios["normal"].extend((0.0, 0.4) for _ in range(60))  # the newest 64 kept
    assert feedback.factor("normal", 0.0) == 1.0  # overestimates: never more lenient than the model
    feedback._ratios["normal"].extend((1.0, 50.0) for _ in range(60))
    assert feedback.factor("normal", 1.0) == MAX_FACTOR
    assert feedback.factor("normal", 1.0 + SAMPLE_TTL_S + 1) == 1.0  # all of them too old


def test_entry_ids_order_like_the_stream() -> None:
    assert entry_key("1000-2") < entry_key("1000-10") < entry_key("1001-0")
    assert entry_key("1000") == (1000, 0)


def test_jobs_admitted_before_the_group_was_made_again_are_not_sampled() -> None:
    feedback = WaitFeedback()
    feedback.observe({"normal": "5000-0"}, 0.0)
    feedback.admitted("normal", "6000-0", 2.0, 0.0)
    feedback.observe({"normal": "0-0"}, 1.0)  # Redis lost its data: the group starts over
    feedback.observe({"normal": "7000-0"}, 9.0)  # a later job given out: 6000-0 may never have been
    assert "normal" not in feedback._ratios


def test_a_class_seen_waiting_lately_keeps_its_places_in_the_shares() -> None:
    """High's queue empty at this instant but busy a moment ago: a normal job still shares the
    drain with it (2 of 5 places), not the whole of it."""
    now = time.time()
    snapshot = Snapshot({"high": 0, "normal": 10, "low": 0}, 5.0, {}, time.monotonic(), frozenset({"high"}))
    assert snapshot.expected_wait_s(now, "normal") == pytest.approx(10.5 / (5.0 * 2 / 5))
    alone = Snapshot({"high": 0, "normal": 10, "low": 0}, 5.0, {}, time.monotonic())
    assert alone.expected_wait_s(now, "normal") == pytest.approx(10.5 / 5.0)


async def test_the_shedder_remembers_which_classes_waited_lately() -> None:
    redis = FakeRedis(["1000-0", "2000-0"], "0-0", lag=2)
    shedder = Shedder(JobQueues(redis), 5.0, refresh_s=0)  # type: ignore[arg-type]
    assert (await shedder.snapshot()).competing == {"high", "normal", "low"}
    redis.lag, redis.last_delivered = 0, "2000-0"
    assert (await shedder.snapshot()).competing == {"high", "normal", "low"}  # within COMPETING_S
    shedder._waited_at = {name: at - COMPETING_S - 1 for name, at in shedder._waited_at.items()}
    assert (await shedder.snapshot()).competing == frozenset()
