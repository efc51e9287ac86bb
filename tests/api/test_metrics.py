"""/metrics and the service's own log, end to end against the session service."""

from __future__ import annotations

import json
import re

from tests.observability.promtext import parse


async def test_metrics_after_an_execution(api, service) -> None:
    record = await api.run(await api.register(["cat"]), {"x": 1})
    assert record["status"] == "COMPLETED", record
    status, text, headers = await api.get("/metrics")
    assert status == 200, text
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    metrics = parse(text.decode())

    assert metrics.types["executor_worker_running_tasks"] == "gauge"
    assert metrics.value("executor_worker_running_tasks") >= 0  # no `instance` label of ours: Prometheus adds it
    assert metrics.series("executor_build_info")[0][0]["instance_id"] == service.instance_id
    assert metrics.value("executor_pool_hits_total") + metrics.value("executor_pool_misses_total") >= 1
    assert metrics.types["executor_queue_depth"] == "gauge"
    assert metrics.value("executor_queue_depth") >= 0
    assert 0 <= metrics.value("executor_queue_oldest_job_age_seconds") < 3600

    starts = {labels["path"]: count for labels, count in metrics.series("executor_container_start_seconds_count")}
    assert set(starts) <= {"pooled", "cold"} and sum(starts.values()) >= 1, starts
    start_s = sum(v for _, v in metrics.series("executor_container_start_seconds_sum"))
    assert 0 < start_s / sum(starts.values()) < 30

    # Moved by Metrics.execution_finished, called where an execution reaches its final state.
    completed = metrics.series("executor_executions_total")
    assert any(labels == {"status": "COMPLETED", "error_type": ""} and count >= 1 for labels, count in completed), \
        f"no finished execution counted (is execution_finished wired?): {completed}"
    for name in ("executor_execution_duration_seconds", "executor_execution_queue_seconds"):
        count = metrics.value(f"{name}_count")
        assert count >= 1, f"{name} has no observation"
        assert 0 <= metrics.value(f"{name}_sum") / count < 60


async def test_metrics_need_an_operator(api) -> None:
    user = await api.new_token("user")
    status, problem, _ = await user.get("/metrics")
    assert status == 403 and problem["type"] == "urn:executor:problem:forbidden", problem


async def test_the_log_is_json_lines_with_the_execution_and_no_secret(api, service) -> None:
    provider = await api.new_token("service")
    status, endpoint, _ = await provider.request("PUT", "/v1/webhooks/endpoint",
                                                 json={"url": "https://hooks.example.com/x"})
    assert status == 200 and endpoint["secret"].startswith("whsec_"), endpoint
    status, _, _ = await api.as_token("exe_" + "not-a-real-token-" * 2).get("/v1/executions")
    assert status == 401
    record = await api.run(await api.register(["sh", "-c", "echo to stderr >&2; cat"]), {"x": 2})
    assert record["status"] == "COMPLETED", record
    await api.get(f"/v1/executions/{record['id']}/logs")

    text = service.log_path.read_text()
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        try:
            lines.append(json.loads(raw))
        except ValueError:
            raise AssertionError(f"line {number} of {service.log_path} is not JSON: {raw!r}") from None
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= set(line), line
        assert line.get("instance") == service.instance_id, line

    assert service.operator_token not in text and provider.token not in text
    assert endpoint["secret"] not in text and endpoint["secret"].removeprefix("whsec_") not in text
    assert not re.search(r"whsec_[A-Za-z0-9+/=]{8}", text)
    assert not re.search(r"exe_(?!\[REDACTED\])[A-Za-z0-9_-]{8}", text), "a bearer token reached the log"

    # Lines about the execution (the access log only names it in a path) carry its id; the
    # worker logs inside bind_execution(), so at least one line does.
    about = [line for line in lines if record["id"] in line["message"] and not line["logger"].endswith("access")]
    assert all(line.get("execution_id") == record["id"] for line in about), about
    carrying = [line for line in lines if line.get("execution_id") == record["id"]]
    assert carrying, f"no log line carries execution_id {record['id']} (is bind_execution wired in the worker?)"
