"""The service's metrics (pure): what a Metrics renders parses back to what was recorded; the
scrape-time gauges read from fake owners; the HTTP middleware's labels; promtool's lint."""

from __future__ import annotations

import asyncio
import math
import shutil
import threading
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from executor.api.http_metrics import UNMATCHED, http_metrics_middleware
from executor.api.keys import INSTANCE
from executor.errors import NotFound, QueueFull, RateLimited, TooManyLive
from executor.observability import metrics as metrics_module
from executor.observability.metrics import DURATION_BUCKETS, Metrics, Readings
from executor.queue.stream import QueueStats
from tests.observability.promtext import Exposition, parse, promtool_check

POOL = {"containers": 2, "starting": 1, "closed_shelves": 0, "shelves": 3, "hits": 5, "misses": 4,
        "discarded": 1, "refills": 7, "refill_seconds_total": 1.5, "container_start_seconds": 0.2}


def render(metrics: Metrics, readings: Readings | None = None) -> Exposition:
    return parse(metrics.exposition(readings).decode())


def test_a_fresh_registry_has_every_family_with_help_and_type() -> None:
    parsed = render(Metrics(instance_id="host-1"))
    executor_types = {name: kind for name, kind in parsed.types.items() if name.startswith("executor_")}
    assert executor_types == {
        "executor_build_info": "gauge",
        "executor_executions_total": "counter",
        "executor_execution_duration_seconds": "histogram",
        "executor_execution_queue_seconds": "histogram",
        "executor_container_start_seconds": "histogram",
        "executor_pool_refill_seconds": "histogram",
        "executor_execution_bodies_deleted_total": "counter",
        "executor_receipts_issued_total": "counter",
        "executor_admission_refusals_total": "counter",
        "executor_http_requests_total": "counter",
        "executor_http_request_duration_seconds": "histogram",
        "executor_webhook_attempts_total": "counter",
        "executor_webhook_attempt_duration_seconds": "histogram",
        "executor_webhook_deliveries_failed_total": "counter",
    }
    assert all(parsed.helps.values())
    assert parsed.types["process_cpu_seconds_total"] == "counter"  # the process collector
    assert "python_info" in parsed.types  # the platform collector
    assert not [name for name, _, _ in parsed.samples if name.endswith("_created")]
    build = parsed.series("executor_build_info")
    assert len(build) == 1 and build[0][0]["instance_id"] == "host-1" and build[0][1] == 1
    # Label-less histograms exist from the start, at zero; known label values too.
    assert parsed.value("executor_pool_refill_seconds_count") == 0
    assert parsed.value("executor_execution_duration_seconds_count") == 0
    assert {labels["reason"] for labels, value in parsed.series("executor_admission_refusals_total")
            if value == 0} == {"rate_limited", "too_many_live_executions", "queue_full"}
    assert parsed.series("executor_executions_total") == []


def test_two_services_in_one_process_do_not_share_a_series() -> None:
    first, second = Metrics(), Metrics()
    first.receipt_issued()
    assert render(first).value("executor_receipts_issued_total") == 1
    assert render(second).value("executor_receipts_issued_total") == 0


def test_finished_executions_count_by_status_and_error_type_and_time_both_histograms() -> None:
    metrics = Metrics()
    metrics.execution_finished("COMPLETED", None, 0.03, 0.2)
    metrics.execution_finished("COMPLETED", None, 0.5, 0.001)
    metrics.execution_finished("FAILED", "nonzero_exit", 1.5, 0.02)
    metrics.execution_finished("CANCELLED", "cancelled", None, None)  # never ran: counted, not timed
    parsed = render(metrics)
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


def test_container_starts_by_path_and_pool_refills_are_histograms() -> None:
    metrics = Metrics()
    metrics.container_started(0.004, pooled=True)
    metrics.container_started(0.3, pooled=False)
    metrics.container_started(500.0, pooled=False)
    metrics.pool_refilled(0.2)
    metrics.pool_refilled(0.7)
    parsed = render(metrics)
    pooled = dict(parsed.buckets("executor_container_start_seconds", path="pooled"))
    cold = dict(parsed.buckets("executor_container_start_seconds", path="cold"))
    assert pooled[0.005] == 1 and parsed.value("executor_container_start_seconds_count", path="pooled") == 1
    assert cold[0.25] == 0 and cold[0.5] == 1 and cold[60.0] == 1 and cold[math.inf] == 2
    assert parsed.value("executor_container_start_seconds_sum", path="cold") == pytest.approx(500.3)
    refill = dict(parsed.buckets("executor_pool_refill_seconds"))
    assert refill[0.25] == 1 and refill[1.0] == 2 and parsed.value("executor_pool_refill_seconds_count") == 2
    assert parsed.value("executor_pool_refill_seconds_sum") == pytest.approx(0.9)


def test_refusals_webhooks_receipts_and_bodies() -> None:
    metrics = Metrics()
    for problem in (RateLimited(), RateLimited(), TooManyLive(), QueueFull(), NotFound(), None):
        metrics.refused(problem)  # only the refusals for now (Throttled) count
    metrics.webhook_attempt(0.02, ok=True, gave_up=False)
    metrics.webhook_attempt(5.0, ok=False, gave_up=False)
    metrics.webhook_attempt(0.5, ok=False, gave_up=True)
    metrics.receipt_issued()
    metrics.bodies_deleted(3)
    parsed = render(metrics)
    assert {labels["reason"]: value for labels, value in parsed.series("executor_admission_refusals_total")} == \
        {"rate_limited": 2, "too_many_live_executions": 1, "queue_full": 1}
    assert parsed.value("executor_webhook_attempts_total", outcome="success") == 1
    assert parsed.value("executor_webhook_attempts_total", outcome="failure") == 2
    assert parsed.value("executor_webhook_deliveries_failed_total") == 1
    assert parsed.value("executor_webhook_attempt_duration_seconds_count") == 3
    assert parsed.value("executor_receipts_issued_total") == 1
    assert parsed.value("executor_execution_bodies_deleted_total") == 3


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.execution_finished('say "hi"\\ \n bye', None, None, None)
    assert render(metrics).value("executor_executions_total", status='say "hi"\\ \n bye', error_type="") == 1


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
    parsed = render(metrics)
    assert parsed.value("executor_container_start_seconds_count", path="cold") == 16000
    assert parsed.value("executor_executions_total", status="COMPLETED", error_type="") == 16000
    assert parsed.value("executor_execution_duration_seconds_count") == 16000


class FakeOwners:
    """What /metrics reads the gauges from, with a webhook outbox that never answers."""

    def __init__(self, pool: Mapping[str, float] | None = POOL) -> None:
        self.pool = pool

    def status(self) -> Mapping[str, Any]:
        return {"instance": "host-1", "worker": {"running": 2, "concurrency": 4}, "pool": self.pool}

    async def queue_stats(self) -> QueueStats | None:
        return QueueStats(depth=3, oldest_age_s=None)

    async def webhooks_pending(self) -> int | None:
        await asyncio.sleep(60)
        return 1

    async def log_entries(self) -> int | None:
        return 42


async def test_gauges_are_read_from_their_owners_at_scrape_time(monkeypatch) -> None:
    monkeypatch.setattr(metrics_module, "SCRAPE_READ_S", 0.05)
    metrics = Metrics()
    parsed = parse((await metrics.scrape(FakeOwners())).decode())
    assert parsed.types["executor_worker_running_tasks"] == "gauge"
    assert parsed.value("executor_worker_running_tasks") == 2 and parsed.value("executor_worker_concurrency") == 4
    assert parsed.value("executor_pool_containers") == 2 and parsed.value("executor_pool_starting") == 1
    assert parsed.value("executor_pool_closed_shelves") == 0
    for name, value in (("executor_pool_hits_total", 5), ("executor_pool_misses_total", 4),
                        ("executor_pool_discarded_total", 1)):
        assert parsed.types[name] == "counter" and parsed.value(name) == value
    assert parsed.value("executor_queue_depth") == 3 and parsed.value("executor_queue_oldest_job_age_seconds") == 0
    assert parsed.value("executor_transparency_log_entries") == 42
    assert "executor_webhook_deliveries_pending" not in parsed.types  # timed out: left out, not a failed scrape
    # No label of our own named `instance`: Prometheus adds it.
    assert not [s for s in parsed.samples if "instance" in s[1]]
    # Outside a scrape the gauges are not rendered (nothing stale is kept).
    assert "executor_worker_running_tasks" not in render(metrics).types


async def test_without_a_pool_or_redis_those_gauges_are_left_out() -> None:
    class Down(FakeOwners):
        async def queue_stats(self) -> QueueStats | None:
            return None

        async def webhooks_pending(self) -> int | None:
            return 0

    parsed = parse((await Metrics().scrape(Down(pool=None))).decode())
    assert not [name for name in parsed.types if name.startswith(("executor_pool_containers", "executor_queue_"))]
    assert parsed.value("executor_webhook_deliveries_pending") == 0
    assert parsed.value("executor_pool_refill_seconds_count") == 0  # the histogram is the registry's


async def test_the_http_middleware_labels_route_templates_methods_and_statuses() -> None:
    metrics = Metrics()
    routes = web.RouteTableDef()

    @routes.get("/v1/things/{id}")
    async def thing(request: web.Request) -> web.Response:
        if request.match_info["id"] == "missing":
            raise web.HTTPNotFound()
        return web.json_response({"id": request.match_info["id"]})

    app = web.Application(middlewares=[http_metrics_middleware])
    app[INSTANCE] = SimpleNamespace(metrics=metrics)  # type: ignore[assignment]
    app.add_routes(routes)
    async with TestClient(TestServer(app)) as client:
        for path in ("/v1/things/a1", "/v1/things/b2", "/v1/things/missing", "/nowhere/123"):
            (await client.get(path)).release()
        (await client.post("/v1/things/a1")).release()  # 405 from routing
        (await client.request("TRACE", "/v1/things/a1")).release()
    parsed = render(metrics)
    counted = {(lab["route"], lab["method"], lab["status"]): v
               for lab, v in parsed.series("executor_http_requests_total")}
    assert counted == {("/v1/things/{id}", "GET", "200"): 2, ("/v1/things/{id}", "GET", "404"): 1,
                       (UNMATCHED, "GET", "404"): 1, (UNMATCHED, "POST", "405"): 1, (UNMATCHED, "other", "405"): 1}
    assert parsed.value("executor_http_request_duration_seconds_count", route="/v1/things/{id}", method="GET") == 3
    assert dict(parsed.buckets("executor_http_request_duration_seconds", route="/v1/things/{id}", method="GET"))
    assert "a1" not in metrics.exposition().decode()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
async def test_promtool_finds_nothing_to_lint(monkeypatch) -> None:
    monkeypatch.setattr(metrics_module, "SCRAPE_READ_S", 0.05)
    metrics = Metrics(instance_id="host-1")
    metrics.execution_finished("COMPLETED", None, 0.1, 0.1)
    metrics.http_request("/v1/executions/{id}", "GET", 200, 0.01)
    assert await asyncio.to_thread(promtool_check, await metrics.scrape(FakeOwners(pool=POOL))) == ""
