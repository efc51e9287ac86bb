"""The service's Prometheus metrics, on prometheus_client (docs/metrics.md lists every series).

One `Metrics` per service (executor/service.py builds it and hands it to what records): a
registry of its own, never prometheus_client's global one, so that two services or tests in one
process never share a series. It holds the counters and histograms, the process and platform
collectors (`process_*`, `python_info`), and `executor_build_info`.

Gauges are not kept here: /metrics reads them from their owners (the worker, the pool, the job
queue, the webhook outbox, the transparency log) at scrape time, through `Owners`, and the
`Readings` of that scrape are rendered with the rest by one collector.

Every recording method may be called from any thread (prometheus_client locks its values):
container starts are timed around docker-py calls that run in threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from executor import __version__
from executor.errors import Problem, Throttled

# The `_created` series are OpenMetrics' start times: in the 0.0.4 text format /metrics serves
# they are plain gauges nobody reads, one more per counter and histogram series. Process-wide.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

# The Prometheus text format (0.0.4), which /metrics serves and its contract names
# (prometheus_client's CONTENT_TYPE_LATEST moved to 1.0.0 in recent versions).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds: a pooled claim is milliseconds, a cold start tenths, a task up to its limit (300 s at most).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
START_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# An API answer is milliseconds; a ?wait= long poll or an event stream lasts up to its wait.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A webhook attempt is bounded by EXECUTOR_WEBHOOK_TIMEOUT_S.
WEBHOOK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Admission refusals that say "later" (the Throttled problems), by their problem slug.
REFUSAL_REASONS = ("rate_limited", "too_many_live_executions", "queue_full")
SCRAPE_READ_S = 2.0  # each owner's reading; past it the gauge is left out of that scrape


class Metrics:
    """One service's counters and histograms, in a registry of its own."""

    def __init__(self, *, instance_id: str = "", version: str = __version__) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        # The executor's own instance id (container labels, logs) is an info metric, never a
        # label of every series: Prometheus adds `instance` (the scraped address) itself.
        Info("executor_build", "The executor's version and instance id (EXECUTOR_INSTANCE_ID); always 1.",
             registry=registry).info({"version": version, "instance_id": instance_id})
        self.executions = Counter(
            "executor_executions_total", "Executions that reached a final state, by status and error type.",
            ("status", "error_type"), registry=registry)
        self.duration = Histogram(
            "executor_execution_duration_seconds", "Wall time of a task, from its input to its exit.",
            registry=registry, buckets=DURATION_BUCKETS)
        self.queued = Histogram(
            "executor_execution_queue_seconds", "Time from an execution's acceptance to its task's start.",
            registry=registry, buckets=DURATION_BUCKETS)
        self.container_start = Histogram(
            "executor_container_start_seconds",
            "Time until a task's container takes its input: a cold start from its creation, "
            "a pre-started one from its claim.", ("path",), registry=registry, buckets=START_BUCKETS)
        self.pool_refill = Histogram(
            "executor_pool_refill_seconds", "Time to start one pre-started container for the pool.",
            registry=registry, buckets=START_BUCKETS)
        self.bodies_deleted_total = Counter(
            "executor_execution_bodies_deleted_total",
            "Executions whose bodies (input, output, stdin, stdout, log) this process deleted past "
            "EXECUTOR_RETENTION_S.", registry=registry)
        self.receipts_issued = Counter(
            "executor_receipts_issued_total", "Receipts signed and appended to the transparency log.",
            registry=registry)
        self.refusals = Counter(
            "executor_admission_refusals_total",
            "Submissions (or batch items) refused for now, by reason: rate_limited, "
            "too_many_live_executions, queue_full.", ("reason",), registry=registry)
        self.http_requests = Counter(
            "executor_http_requests_total",
            "HTTP requests answered, by route template (`unmatched` when no route matched), method and status.",
            ("route", "method", "status"), registry=registry)
        self.http_duration = Histogram(
            "executor_http_request_duration_seconds",
            "Time from a request's arrival to its answer (a long poll's or a stream's whole length), "
            "by route template and method.", ("route", "method"), registry=registry, buckets=HTTP_BUCKETS)
        self.webhook_attempts = Counter(
            "executor_webhook_attempts_total", "Webhook delivery attempts, by outcome: success (a 2xx) or failure.",
            ("outcome",), registry=registry)
        self.webhook_attempt_duration = Histogram(
            "executor_webhook_attempt_duration_seconds", "Time of one webhook delivery attempt.",
            registry=registry, buckets=WEBHOOK_BUCKETS)
        self.webhooks_failed = Counter(
            "executor_webhook_deliveries_failed_total",
            "Webhook deliveries given up after EXECUTOR_WEBHOOK_MAX_ATTEMPTS failed attempts (dead).",
            registry=registry)
        # Label values known in advance exist from the start, at 0: rate() needs a first sample.
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)
        for outcome in ("success", "failure"):
            self.webhook_attempts.labels(outcome)
        self._gauges = _GaugeCollector()
        registry.register(self._gauges)

    def execution_finished(self, status: str, error_type: str | None, duration_s: float | None,
                           queued_s: float | None) -> None:
        """An execution's final state; durations that are unknown (it never ran) are None."""
        self.executions.labels(status, error_type or "").inc()
        if duration_s is not None and duration_s >= 0:
            self.duration.observe(duration_s)
        if queued_s is not None and queued_s >= 0:
            self.queued.observe(queued_s)

    def container_started(self, seconds: float, *, pooled: bool) -> None:
        """runtimes' StartObserver (runtimes/container.py)."""
        self.container_start.labels("pooled" if pooled else "cold").observe(max(seconds, 0.0))

    def pool_refilled(self, seconds: float) -> None:
        self.pool_refill.observe(max(seconds, 0.0))

    def bodies_deleted(self, count: int) -> None:
        self.bodies_deleted_total.inc(count)

    def receipt_issued(self) -> None:
        self.receipts_issued.inc()

    def refused(self, problem: Problem | None) -> None:
        """Counts `problem` when it is an admission refusal for now (a Throttled); else nothing."""
        if isinstance(problem, Throttled):
            self.refusals.labels(problem.slug).inc()

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_duration.labels(route, method).observe(max(seconds, 0.0))

    def webhook_attempt(self, seconds: float, *, ok: bool, gave_up: bool) -> None:
        """One delivery attempt; `gave_up`: it was the last one allowed, and failed."""
        self.webhook_attempts.labels("success" if ok else "failure").inc()
        self.webhook_attempt_duration.observe(max(seconds, 0.0))
        if gave_up:
            self.webhooks_failed.inc()

    def exposition(self, readings: Readings | None = None) -> bytes:
        """Every series in the text format (0.0.4), with the gauges of `readings`. Synchronous,
        so two scrapes never see each other's readings."""
        self._gauges.readings = readings
        try:
            return generate_latest(self.registry)
        finally:
            self._gauges.readings = None

    async def scrape(self, owners: Owners) -> bytes:
        return self.exposition(await read(owners))


class QueueReading(Protocol):
    """The job queue's state (executor/queue/stream.py's QueueStats is one)."""

    @property
    def depth(self) -> int: ...

    @property
    def oldest_age_s(self) -> float | None: ...


class Owners(Protocol):
    """Where the gauges are read at scrape time: the API's services (executor/api/observe.py)."""

    def status(self) -> Mapping[str, Any]:
        """The instance's status: its worker (running, concurrency) and its pool's snapshot or None."""
        ...

    async def queue_stats(self) -> QueueReading | None: ...

    async def webhooks_pending(self) -> int | None: ...

    async def log_entries(self) -> int | None: ...


@dataclass(frozen=True)
class Readings:
    """The gauges of one scrape; None: not known now (a dependency did not answer, or no pool)."""

    worker_running: int
    worker_concurrency: int
    pool: Mapping[str, float] | None = None
    queue: QueueReading | None = None
    webhooks_pending: int | None = None
    log_entries: int | None = None


async def read(owners: Owners) -> Readings:
    """Every owner at once, each within SCRAPE_READ_S: a scrape never fails for a slow or
    unreachable dependency (/readyz says which one is down), its gauges are just left out."""
    async def within(reading: Any) -> Any:
        try:
            return await asyncio.wait_for(reading, SCRAPE_READ_S)
        except TimeoutError:
            return None

    queue, pending, entries = await asyncio.gather(
        within(owners.queue_stats()), within(owners.webhooks_pending()), within(owners.log_entries()))
    status = owners.status()
    return Readings(worker_running=int(status["worker"]["running"]),
                    worker_concurrency=int(status["worker"]["concurrency"]),
                    pool=status.get("pool"), queue=queue, webhooks_pending=pending, log_entries=entries)


# name, help, key in the pool snapshot (runtimes/pool.py)
_POOL_GAUGES = (
    ("executor_pool_containers", "Pre-started containers ready to be claimed.", "containers"),
    ("executor_pool_starting", "Pre-started containers being started.", "starting"),
    ("executor_pool_closed_shelves",
     "Agents kept to cold starts: their unclaimed containers used CPU before any input.", "closed_shelves"),
)
_POOL_COUNTERS = (  # named without _total: prometheus_client adds it
    ("executor_pool_hits", "Tasks that got a pre-started container.", "hits"),
    ("executor_pool_misses", "Tasks that found the pool empty and started cold.", "misses"),
    ("executor_pool_discarded", "Pre-started containers removed unused (dead or idle).", "discarded"),
)


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


class _GaugeCollector(Collector):
    """The readings of the scrape under way; nothing outside one."""

    def __init__(self) -> None:
        self.readings: Readings | None = None

    def describe(self) -> list[Metric]:
        return []  # names known only at scrape time: not checked against the registry's

    def collect(self) -> Iterator[Metric]:
        current = self.readings
        if current is None:
            return
        yield _gauge("executor_worker_running_tasks", "Tasks this worker runs now.", current.worker_running)
        yield _gauge("executor_worker_concurrency", "Tasks this worker runs at most at once "
                     "(EXECUTOR_WORKER_CONCURRENCY).", current.worker_concurrency)
        if current.pool is not None:
            for name, help_text, key in _POOL_GAUGES:
                yield _gauge(name, help_text, current.pool[key])
            for name, help_text, key in _POOL_COUNTERS:
                yield CounterMetricFamily(name, help_text, value=current.pool[key])
        if current.queue is not None:
            yield _gauge("executor_queue_depth", "Jobs accepted and not yet finished.", current.queue.depth)
            yield _gauge("executor_queue_oldest_job_age_seconds",
                         "Age of the oldest job in the queue (0 when it is empty).", current.queue.oldest_age_s or 0.0)
        if current.webhooks_pending is not None:
            yield _gauge("executor_webhook_deliveries_pending",
                         "Webhook deliveries waiting for their first or next attempt (the outbox).",
                         current.webhooks_pending)
        if current.log_entries is not None:
            yield _gauge("executor_transparency_log_entries",
                         "Receipts in the transparency log: its tree size.", current.log_entries)
