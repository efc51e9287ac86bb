"""/metrics of a live service after some executions: promtool finds nothing to lint, the
timings are histograms, HTTP requests carry route templates, and no label of ours is `instance`."""

from __future__ import annotations

import asyncio
import re

from tests.observability.promtext import parse, promtool_check


async def test_the_live_exposition_passes_promtool_and_has_histograms(api, service) -> None:
    agent_id = await api.register(["cat"])
    records = [await api.run(agent_id, {"n": n}) for n in range(3)]
    assert all(record["status"] == "COMPLETED" for record in records), records
    status, _, _ = await api.get(f"/v1/executions/{records[0]['id']}")
    assert status == 200
    status, body, headers = await api.get("/metrics")
    assert status == 200, body
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()

    assert await asyncio.to_thread(promtool_check, body) == ""

    metrics = parse(text)
    for name in ("executor_pool_refill_seconds", "executor_http_request_duration_seconds",
                 "executor_execution_duration_seconds", "executor_container_start_seconds"):
        assert f"# TYPE {name} histogram" in text, name
    assert re.search(r'^executor_http_request_duration_seconds_bucket\{.*le="\+Inf".*\} ', text, re.M)
    assert re.search(r'^executor_pool_refill_seconds_bucket\{le="0.1"\} ', text, re.M)
    assert metrics.value("executor_pool_refill_seconds_count") >= 1  # the pool refilled the agent's shelf

    routes = {(labels["route"], labels["method"], labels["status"])
              for labels, _ in metrics.series("executor_http_requests_total")}
    assert ("/v1/executions/{id}", "GET", "200") in routes, routes
    assert ("/v1/executions", "POST", "201") in routes or ("/v1/executions", "POST", "202") in routes, routes
    assert not [route for route, _, _ in routes if records[0]["id"] in route]
    assert metrics.value("executor_http_request_duration_seconds_count", route="/v1/executions/{id}",
                         method="GET") >= 1

    assert "instance=" not in text, "a label named instance is Prometheus' own"
    (build,) = metrics.series("executor_build_info")
    assert build[0]["instance_id"] == service.instance_id
    assert metrics.value("executor_receipts_issued_total") >= 3
    assert metrics.value("executor_transparency_log_entries") >= 3
    assert metrics.value("executor_webhook_deliveries_pending") >= 0
    assert metrics.value("process_resident_memory_bytes") > 0
    assert metrics.types["executor_pool_hits_total"] == "counter"
