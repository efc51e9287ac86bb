"""`executor executions list|get|wait|cancel|logs` against the live service."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from executor.cli import http
from tests.cli.conftest import Cli, as_json, document, one_line_error
from tests.conftest import ServiceProcess


async def test_list_get_wait_and_logs(cli: Cli, api) -> None:
    agent_id = await api.register(["sh", "-c", "echo to-the-log >&2; cat"])
    first = await api.run(agent_id, {"n": 1})
    second = await api.run(agent_id, {"n": 2})
    listed = as_json(cli("executions", "list", "--agent", agent_id, "--json"))
    assert [e["id"] for e in listed] == [second["id"], first["id"]]  # newest first
    assert [e["id"] for e in as_json(cli("executions", "list", "--agent", agent_id, "--limit", "1", "--json"))] \
        == [second["id"]]
    assert as_json(cli("executions", "list", "--agent", agent_id, "--status", "FAILED", "--json")) == []
    # A window of creation time, given in any offset (the `+` of one must reach the service intact).
    since = datetime.fromisoformat(second["created_at"]).astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert [e["id"] for e in as_json(cli("executions", "list", "--agent", agent_id, "--since", since.isoformat(),
                                         "--json"))] == [second["id"]]
    assert [e["id"] for e in as_json(cli("executions", "list", "--agent", agent_id, "--before", since.isoformat(),
                                         "--json"))] == [first["id"]]
    naive = cli("executions", "list", "--since", "2026-12-06T09:00:00")
    assert naive.returncode == 2 and "offset" in naive.stderr and "Traceback" not in naive.stderr

    table = cli("executions", "list", "--agent", agent_id)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["ID", "STATUS", "AGENT"] and len(rows) == 2
    assert rows[0].startswith(second["id"]) and "COMPLETED" in rows[0] and "\x1b[" not in table.stdout

    record = as_json(cli("executions", "get", first["id"], "--json"))
    assert record["status"] == "COMPLETED" and record["output"] == {"n": 1}
    shown = cli("executions", "get", first["id"])
    assert "status:" in shown.stdout and "COMPLETED" in shown.stdout and first["id"] in shown.stdout

    waited = cli("executions", "wait", first["id"], "--json")
    assert as_json(waited)["status"] == "COMPLETED"
    log = cli("executions", "logs", first["id"])
    assert log.returncode == 0 and "to-the-log" in log.stdout
    assert "to-the-log" in as_json(cli("executions", "logs", first["id"], "--json"))["log"]


async def test_wait_exits_1_when_the_execution_fails_and_cancel(cli: Cli, api) -> None:
    failing = await api.register(["sh", "-c", "exit 3"])
    record = await api.run(failing, {}, wait=0)
    waited = cli("executions", "wait", record["id"], "--timeout", "60")
    assert waited.returncode == 1, waited.stderr
    assert waited.stderr.strip().splitlines()[-1].endswith("(execution_failed)")
    assert f"{record['id']}: FAILED" in waited.stderr  # the progress, one line a state (not a terminal)
    assert "nonzero_exit" in waited.stdout

    sleeper = await api.register(["sleep", "30"])
    running = await api.run(sleeper, {}, wait=0)
    timed_out = cli("executions", "wait", running["id"], "--timeout", "0.5", "--json")
    assert timed_out.returncode == 1 and timed_out.stderr.strip().endswith("(timeout)"), timed_out.stderr
    cancelled = as_json(cli("executions", "cancel", running["id"], "--json"))
    assert cancelled["id"] == running["id"] and cancelled["status"] in ("RUNNING", "PENDING", "CANCELLED")
    final = cli("executions", "wait", running["id"], "--json")
    assert final.returncode == 1 and document(final)["status"] == "CANCELLED"


async def test_lists_follow_next_cursor(api, service: ServiceProcess, monkeypatch) -> None:
    """Every page is read: with pages of 2, five executions take three requests."""
    agent_id = await api.register(["cat"])
    ids = [(await api.run(agent_id, {"n": n}))["id"] for n in range(5)]
    monkeypatch.setattr(http, "MAX_PAGE", 2)
    client = http.Api(service.base_url, service.operator_token)
    everything = await asyncio.to_thread(client.items, "/v1/executions", query={"agent_id": agent_id})
    assert [e["id"] for e in everything] == ids[::-1]
    some = await asyncio.to_thread(client.items, "/v1/executions", query={"agent_id": agent_id}, limit=3)
    assert [e["id"] for e in some] == ids[:1:-1]


async def test_unknown_execution_is_5(cli: Cli) -> None:
    for action in ("get", "wait", "cancel", "logs"):
        one_line_error(cli("executions", action, "0b5c1a52-6f0e-4c8e-9a55-2f1d8f7e0c11"), 5, "not_found")
