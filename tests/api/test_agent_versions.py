"""Agent versions end to end: published immutable, deprecated, withdrawn, pinned by every
execution, and counted in the agent's stats."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import Api

PROBLEM = "urn:executor:problem:"


def _version_body(command: list[str], **extra: Any) -> dict[str, Any]:
    return {"image": "executor/busybox:latest", "command": command, "input_schema": {"type": "object"},
            "output_schema": True, **extra}


async def test_versions_are_published_pinned_deprecated_and_withdrawn(market: Api) -> None:
    service = await market.new_token("service")
    agent_id = await service.register(["sh", "-c", "echo '{\"v\": 1}'"])
    status, v2, headers = await service.post(f"/v1/agents/{agent_id}/versions", json=_version_body(
        ["sh", "-c", "echo '{\"v\": 2}'"], pricing={"currency": "EUR", "decimals": 2, "per_call": 7}))
    assert status == 201 and v2["version"] == 2 and v2["status"] == "published", v2
    assert headers["Location"] == f"/v1/agents/{agent_id}/versions/2"
    assert v2["pricing"]["per_call"] == 7 and v2["image_digest"].startswith("sha256:")

    latest = await service.run(agent_id)
    assert latest["agent_version"] == 2 and latest["output"] == {"v": 2} and latest["cost"]["amount"] == 7
    status, pinned, _ = await service.post("/v1/executions?wait=30", json={"agent_id": agent_id, "version": 1,
                                                                            "input": {}})
    assert status == 201 and pinned["agent_version"] == 1 and pinned["output"] == {"v": 1}

    # Immutable: nothing rewrites a version, only its status moves.
    for method in ("PUT", "PATCH", "DELETE"):
        status, _, _ = await service.request(method, f"/v1/agents/{agent_id}/versions/2", json={})
        assert status == 405
    status, deprecated, _ = await service.post(f"/v1/agents/{agent_id}/versions/2/deprecate")
    assert status == 200 and deprecated["status"] == "deprecated" and deprecated["status_changed_at"]
    assert deprecated["command"] == v2["command"] and deprecated["pricing"] == v2["pricing"]
    assert (await service.run(agent_id))["agent_version"] == 1  # the newest published one runs by default
    status, still, _ = await service.post("/v1/executions?wait=30", json={"agent_id": agent_id, "version": 2,
                                                                           "input": {}})
    assert status == 201 and still["agent_version"] == 2  # a deprecated version runs when asked for

    status, withdrawn, _ = await service.post(f"/v1/agents/{agent_id}/versions/1/withdraw")
    assert status == 200 and withdrawn["status"] == "withdrawn"
    status, problem, _ = await service.post("/v1/executions", json={"agent_id": agent_id, "version": 1, "input": {}})
    assert status == 410 and problem["type"] == PROBLEM + "agent_version_withdrawn"
    assert (await service.run(agent_id))["agent_version"] == 2  # deprecated beats withdrawn
    status, problem, _ = await service.post(f"/v1/agents/{agent_id}/versions/1/deprecate")
    assert status == 409  # a withdrawn version stays withdrawn
    await service.post(f"/v1/agents/{agent_id}/versions/2/withdraw")
    status, problem, _ = await service.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
    assert status == 410 and problem["type"] == PROBLEM + "agent_version_withdrawn"

    # The executions keep the version they ran.
    status, record, _ = await service.get(f"/v1/executions/{pinned['id']}")
    assert record["agent_version"] == 1
    status, listed, _ = await service.get(f"/v1/agents/{agent_id}/versions")
    assert [(v["version"], v["status"]) for v in listed["items"]] == [(1, "withdrawn"), (2, "withdrawn")]


async def test_only_the_owner_or_an_operator_changes_an_agent(market: Api) -> None:
    owner = await market.new_token("service")
    rival = await market.new_token("service")
    user = await market.new_token("user")
    agent_id = await owner.register(["cat"])
    for client, expected in ((rival, 403), (user, 403)):
        status, problem, _ = await client.post(f"/v1/agents/{agent_id}/versions", json=_version_body(["cat"]))
        assert status == expected, problem
        status, problem, _ = await client.post(f"/v1/agents/{agent_id}/versions/1/deprecate")
        assert status == expected, problem
    status, v2, _ = await market.post(f"/v1/agents/{agent_id}/versions", json=_version_body(["cat"]))
    assert status == 201 and v2["version"] == 2
    status, problem, _ = await owner.post(f"/v1/agents/{agent_id}/versions", json={**_version_body(["cat"]),
                                                                                   "name": "renamed"})
    assert status == 422 and problem["errors"][0]["pointer"] == "/name"
    status, problem, _ = await owner.post(f"/v1/agents/{agent_id}/versions/9/deprecate")
    assert status == 404


async def test_stats_per_version(market: Api) -> None:
    service = await market.new_token("service")
    agent_id = await service.register(["cat"], output_schema={"type": "object", "required": ["ok"]})
    for value in ({"ok": 1}, {"ok": 2}, {"ok": 3}, {"no": 1}):
        await service.run(agent_id, value)
    status, v2, _ = await service.post(f"/v1/agents/{agent_id}/versions", json=_version_body(["sh", "-c", "exit 1"]))
    assert status == 201 and v2["version"] == 2, v2
    await service.run(agent_id)

    status, stats, _ = await service.get(f"/v1/agents/{agent_id}/stats")
    assert status == 200, stats
    first, second = stats["versions"]
    assert (first["version"], first["executions"], first["final"]) == (1, 4, 4)
    assert first["by_status"] == {"COMPLETED": 3, "FAILED": 1, "TIMEOUT": 0, "CANCELLED": 0}
    assert first["success_rate"] == 0.75
    assert 0 <= first["duration_ms"]["p50"] <= first["duration_ms"]["p95"]
    assert first["duration_ms"]["p50"] <= first["latency_ms"]["p50"] <= first["latency_ms"]["p95"]
    assert (second["version"], second["executions"], second["success_rate"]) == (2, 1, 0.0)

    user = await market.new_token("user")
    status, _, _ = await user.get(f"/v1/agents/{agent_id}/stats")
    assert status == 403


async def test_stats_count_executions_per_hour(market: Api) -> None:
    """The last 24 UTC hours, oldest first, empty hours included; this agent ran twice, just now."""
    service = await market.new_token("service")
    agent_id = await service.register(["cat"], output_schema={"type": "object", "required": ["ok"]})
    assert (await service.run(agent_id, {"ok": 1}))["status"] == "COMPLETED"
    assert (await service.run(agent_id, {"no": 1}))["status"] == "FAILED"

    status, stats, _ = await service.get(f"/v1/agents/{agent_id}/stats")
    assert status == 200, stats
    hours = stats["hourly"]
    assert len(hours) == 24
    starts = [datetime.fromisoformat(h["start"]) for h in hours]
    assert all(h["start"].endswith(":00:00Z") for h in hours), hours
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(starts))
    assert starts[-1] <= datetime.now(UTC) < starts[-1] + timedelta(hours=1, minutes=1)  # the current hour
    assert sum(h["executions"] for h in hours) == 2
    assert sum(h["completed"] for h in hours) == 1 and sum(h["failed"] for h in hours) == 1
