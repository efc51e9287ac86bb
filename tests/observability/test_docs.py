"""The shipped monitoring files (pure): docs/prometheus.yml is a valid Prometheus config, the
Grafana dashboard's queries parse and name only series the service exports, and docs/metrics.md
lists every executor_ series."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from executor.observability.metrics import Metrics, Readings
from executor.queue.stream import QueueStats
from tests.observability.promtext import parse

DOCS = Path(__file__).resolve().parents[2] / "docs"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool (Debian package prometheus) is not installed")
POOL = {"containers": 0, "starting": 0, "closed_shelves": 0, "hits": 0, "misses": 0, "discarded": 0}


def exported_families() -> set[str]:
    """Every family a service with a pool and every dependency up exports."""
    readings = Readings(0, 1, POOL, QueueStats(0, None), webhooks_pending=0, log_entries=0)
    return set(parse(Metrics().exposition(readings).decode()).types)


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_the_dashboard_names_only_exported_series() -> None:
    families = exported_families()
    suffixed = families | {f"{name}{suffix}" for name in families for suffix in ("_bucket", "_sum", "_count")}
    named = {name for expr in dashboard_queries()
             for name in re.findall(r"\b((?:executor|process)_[a-z_]+)\b", expr)}
    assert named and named <= suffixed, named - suffixed


def test_metrics_md_lists_every_executor_family() -> None:
    text = (DOCS / "metrics.md").read_text()
    missing = sorted(name for name in exported_families()
                     if name.startswith("executor_") and f"`{name}" not in text)
    assert not missing, missing


@needs_promtool
def test_the_dashboard_queries_parse(tmp_path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{n}", "expr": expr.replace("$__rate_interval", "5m").replace("$job", ".*")}
        for n, expr in enumerate(dashboard_queries())]}]}
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    checked = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, timeout=60)
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()


@needs_promtool
def test_the_scrape_example_is_a_valid_config(tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("exe_example\n")
    config = tmp_path / "prometheus.yml"
    config.write_text((DOCS / "prometheus.yml").read_text().replace("/etc/prometheus/executor-token", str(token)))
    checked = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, timeout=60)
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
