"""A tiny in-process Prometheus registry: labelled counters and histograms, rendered in
the text exposition format (version 0.0.4). No dependency.

Thread-safe: container starts are timed around docker-py calls that run in threads.
Gauges are not kept here: /metrics reads them from their owners when scraped.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

# Seconds: a pooled claim is milliseconds, a cold start tenths, a task up to its limit (300 s at most).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
START_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[str, ...]


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def sample(name: str, labels: dict[str, str], value: float) -> str:
    """One exposition line: name{k="v",...} value."""
    if not labels:
        return f"{name} {format_value(value)}"
    inner = ",".join(f'{key}="{escape_label(str(val))}"' for key, val in labels.items())
    return f"{name}{{{inner}}} {format_value(value)}"


def header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}"]


class _Family:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)

    def _labels(self, values: Labels) -> dict[str, str]:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        return dict(zip(self.labelnames, values, strict=True))


class Counter(_Family):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[Labels, float] = {} if labelnames else {(): 0.0}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        self._labels(labels)
        self._values[labels] = self._values.get(labels, 0.0) + amount

    def lines(self) -> list[str]:
        out = header(self.name, self.kind, self.help)
        for labels, value in sorted(self._values.items()):
            out.append(sample(self.name, self._labels(labels), value))
        return out


class Histogram(_Family):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        super().__init__(name, help_text, labelnames)
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("buckets must be increasing")
        self.buckets = tuple(float(b) for b in buckets)
        # per label set: [count per bucket (not cumulative)..., over the last], sum, count
        self._series: dict[Labels, tuple[list[int], list[float]]] = {}
        if not labelnames:
            self._series[()] = self._empty()

    def _empty(self) -> tuple[list[int], list[float]]:
        return [0] * (len(self.buckets) + 1), [0.0, 0.0]

    def observe(self, value: float, labels: Labels = ()) -> None:
        self._labels(labels)
        counts, totals = self._series.setdefault(labels, self._empty())
        index = next((i for i, bound in enumerate(self.buckets) if value <= bound), len(self.buckets))
        counts[index] += 1
        totals[0] += value
        totals[1] += 1

    def lines(self) -> list[str]:
        out = header(self.name, self.kind, self.help)
        for labels, (counts, (total, count)) in sorted(self._series.items()):
            named = self._labels(labels)
            cumulative = 0
            for bound, in_bucket in zip((*self.buckets, math.inf), counts, strict=True):
                cumulative += in_bucket
                le = "+Inf" if math.isinf(bound) else repr(bound)
                out.append(sample(f"{self.name}_bucket", {**named, "le": le}, cumulative))
            out.append(sample(f"{self.name}_sum", named, total))
            out.append(sample(f"{self.name}_count", named, count))
        return out


class Metrics:
    """The process's counters and histograms; every method may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.executions = Counter(
            "executor_executions_total", "Executions that reached a final state, by status and error type.",
            ("status", "error_type"))
        self.duration = Histogram(
            "executor_execution_duration_seconds", "Wall time of a task, from its input to its exit.")
        self.queued = Histogram(
            "executor_execution_queue_seconds", "Time from an execution's acceptance to its task's start.")
        self.container_start = Histogram(
            "executor_container_start_seconds",
            "Time until a task's container takes its input: a cold start from its creation, "
            "a pre-started one from its claim.", ("path",), buckets=START_BUCKETS)
        self.bodies_deleted_total = Counter(
            "executor_execution_bodies_deleted_total",
            "Executions whose bodies (input, output, stdin, stdout, log) this process deleted past "
            "EXECUTOR_RETENTION_S.")
        self._families: list[Counter | Histogram] = [self.executions, self.duration, self.queued,
                                                     self.container_start, self.bodies_deleted_total]

    def execution_finished(self, status: str, error_type: str | None, duration_s: float | None,
                           queued_s: float | None) -> None:
        """An execution's final state; durations that are unknown (it never ran) are None."""
        with self._lock:
            self.executions.inc((status, error_type or ""))
            if duration_s is not None and duration_s >= 0:
                self.duration.observe(duration_s)
            if queued_s is not None and queued_s >= 0:
                self.queued.observe(queued_s)

    def container_started(self, seconds: float, *, pooled: bool) -> None:
        with self._lock:
            self.container_start.observe(max(seconds, 0.0), ("pooled" if pooled else "cold",))

    def bodies_deleted(self, count: int) -> None:
        with self._lock:
            self.bodies_deleted_total.inc(amount=count)

    def render(self) -> list[str]:
        """Every family as exposition lines (HELP, TYPE, samples)."""
        with self._lock:
            return [line for family in self._families for line in family.lines()]


METRICS = Metrics()
