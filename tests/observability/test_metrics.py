"""The in-process Prometheus registry (pure): what it renders parses back to what was recorded."""

from __future__ import annotations

import math
import threading

import pytest

from executor.observability.metrics import (
    DURATION_BUCKETS,
    METRICS,
    Counter,
    Histogram,
    Metrics,
)
from tests.observability.promtext import parse


def render(metrics: Metrics) -> str:
    return "\n".join(metrics.render()) + "\n"


def test_a_fresh_registry_renders_every_family_with_help_and_type() -> None:
    parsed = parse(render(Metrics()))
    assert parsed.types == {
        "executor_executions_total": "counter",
        "executor_execution_duration_seconds": "histogram",
        "executor_execution_queue_seconds": "histogram",
        "executor_container_start_seconds": "histogram",
        "executor_execution_bodies_deleted_total": "counter",
    }
    assert all(parsed.helps.values())
    # Label-less histograms exist from the start, at zero; labelled families have no series yet.
    assert parsed.value("executor_execution_duration_seconds_count") == 0
    assert parsed.series("executor_executions_total") == []
    assert parsed.series("executor_container_start_seconds_count") == []


def test_finished_executions_count_by_status_and_error_type_and_time_both_histograms() -> None:
    metrics = Metrics()
    metrics.execution_finished("COMPLETED", None, 0.03, 0.2)
    metrics.execution_finished("COMPLETED", None, 0.5, 0.001)
    metrics.execution_finished("FAILED", "nonzero_exit", 1.5, 0.02)
    metrics.execution_finished("CANCELLED", "cancelled", None, None)  # never ran: counted, not timed
    parsed = parse(render(metrics))
    assert parsed.value("executor_executions_total", status="COMPLETED", error_type="") == 2
    assert parsed.value("executor_executions_total", status="FAILED", error_type="nonzero_exit") == 1
    assert parsed.value("executor_executions_total", status="CANCELLED", error_type="cancelled") == 1
    assert parsed.value("executor_execution_duration_seconds_count") == 3
    assert parsed.value("executor_execution_duration_seconds_sum") == pytest.approx(2.03)
    duration = dict(parsed.buckets("executor_execution_duration_seconds"))
    assert duration[0.025] == 0 and duration[0.05] == 1 and duration[0.5] == 2 and duration[2.5] == 3
    assert duration[math.inf] == 3
    assert [b for b in duration if not math.isinf(b)] == list(DURATION_BUCKETS)
    assert parsed.value("executor_execution_queue_seconds_count") == 3
    assert dict(parsed.buckets("executor_execution_queue_seconds"))[0.005] == 1


def test_container_starts_by_path_and_a_value_past_every_bucket() -> None:
    metrics = Metrics()
    metrics.container_started(0.004, pooled=True)
    metrics.container_started(0.3, pooled=False)
    metrics.container_started(500.0, pooled=False)
    parsed = parse(render(metrics))
    pooled = dict(parsed.buckets("executor_container_start_seconds", path="pooled"))
    cold = dict(parsed.buckets("executor_container_start_seconds", path="cold"))
    assert pooled[0.005] == 1 and parsed.value("executor_container_start_seconds_count", path="pooled") == 1
    assert cold[0.25] == 0 and cold[0.5] == 1 and cold[60.0] == 1 and cold[math.inf] == 2
    assert parsed.value("executor_container_start_seconds_sum", path="cold") == pytest.approx(500.3)


def test_label_values_and_help_are_escaped() -> None:
    counter = Counter("x_total", 'a help with \\ and\na newline', ("reason",))
    counter.inc(('say "hi"\\ \n bye',))
    histogram = Histogram("y_seconds", "h", ("k",), buckets=(1.0,))
    histogram.observe(0.5, ('a"b',))
    text = "\n".join(counter.lines() + histogram.lines()) + "\n"
    assert "# HELP x_total a help with \\\\ and\\na newline" in text
    parsed = parse(text)
    assert parsed.value("x_total", reason='say "hi"\\ \n bye') == 1
    assert parsed.value("y_seconds_count", k='a"b') == 1


def test_wrong_labels_and_buckets_are_refused() -> None:
    with pytest.raises(ValueError):
        Counter("x_total", "h", ("a",)).inc(("1", "2"))
    with pytest.raises(ValueError):
        Histogram("y", "h", buckets=(1.0, 0.5))


def test_concurrent_updates_from_threads_are_all_counted() -> None:
    metrics = Metrics()

    def work() -> None:
        for _ in range(2000):
            metrics.container_started(0.01, pooled=False)
            metrics.execution_finished("COMPLETED", None, 0.1, 0.1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parsed = parse(render(metrics))
    assert parsed.value("executor_container_start_seconds_count", path="cold") == 16000
    assert parsed.value("executor_executions_total", status="COMPLETED", error_type="") == 16000
    assert parsed.value("executor_execution_duration_seconds_count") == 16000


def test_the_process_registry_is_one_metrics_object() -> None:
    assert isinstance(METRICS, Metrics)
    parse(render(METRICS))
