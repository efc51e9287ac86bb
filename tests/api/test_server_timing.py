"""EXECUTOR_SERVER_TIMING (docs/benchmarks.md): a submission that waits for its end is answered
with a Server-Timing header naming every phase, the worker's included, even when another
process ran it; without the setting no answer carries one."""

from __future__ import annotations

import re

from tests.conftest import Api, ServiceProcess, make_service, operator_clients, with_api_sibling

PHASE = re.compile(r"([a-z]+);dur=([0-9]+\.[0-9]{2})")
# In the order they happen: the API's, the worker's, the runtime's, the worker's, the API's. An
# API in the worker's process is handed the final record; another one reads it.
PHASES = ["authenticated", "admitted", "accepted", "read", "claimed", "container", "output", "exited", "metered",
          "checked", "finished", "woken", "answered", "total"]
ELSEWHERE = [*PHASES[:-2], "reread", *PHASES[-2:]]


def phases(header: str) -> list[tuple[str, float]]:
    parts = [part.strip() for part in header.split(",")]
    found = [PHASE.fullmatch(part) for part in parts]
    assert all(found), header
    return [(m.group(1), float(m.group(2))) for m in found if m]


async def test_a_waited_submission_says_where_its_time_went(postgres, redis_server, images) -> None:
    svc = make_service(postgres, redis_server, "timing", redis_db="9", server_timing="true")
    with with_api_sibling(svc, "timing_api") as pair:
        async with operator_clients(pair) as (serving, api_only):
            agent_id = await serving.register(["cat"])
            for api, expected in ((serving, PHASES), (api_only, ELSEWHERE), (serving, PHASES)):
                status, record, headers = await api.post("/v1/executions?wait=30",
                                                         json={"agent_id": agent_id, "input": {"a": 1}})
                assert status == 201 and record["status"] == "COMPLETED", record
                found = phases(headers["Server-Timing"])
                assert [name for name, _ in found] == expected, found
                total = dict(found)["total"]
                assert abs(sum(dur for name, dur in found if name != "total") - total) < 0.2, found
            # Any other answer has the API's own phases.
            status, _, headers = await api_only.get(f"/v1/executions/{record['id']}")
            assert status == 200 and [n for n, _ in phases(headers["Server-Timing"])] == \
                ["authenticated", "answered", "total"]


async def test_no_header_by_default(api: Api, service: ServiceProcess) -> None:
    agent_id = await api.register(["cat"])
    status, record, headers = await api.post("/v1/executions?wait=30", json={"agent_id": agent_id, "input": {}})
    assert status == 201 and record["status"] == "COMPLETED" and "Server-Timing" not in headers
