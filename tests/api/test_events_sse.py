"""GET /v1/executions/{id}/events: live status as Server-Sent Events, end to end."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from tests.conftest import Api


async def read_events(api: Api, execution_id: str, *, headers: dict[str, str] | None = None,
                      timeout: float = 30.0) -> tuple[list[dict[str, Any]], Any]:
    """Every event until the server closes the stream: [{id, event, data}], and the response."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        async with api.session.get(f"{api.base_url}/v1/executions/{execution_id}/events",
                                   headers={"Authorization": f"Bearer {api.token}", **(headers or {})}) as response:
            assert response.status == 200, await response.text()
            current: dict[str, Any] = {}
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    continue  # a comment (keepalive)
                if not line:
                    if current:
                        current["data"] = json.loads(current["data"])
                        events.append(current)
                    current = {}
                    continue
                key, _, value = line.partition(": ")
                current[key] = value
            assert not current, f"the stream ended inside an event: {current}"
    return events, response


async def test_a_running_execution_streams_its_states_then_the_final_record(api) -> None:
    agent = await api.register(["sh", "-c", "sleep 1; cat"])
    status, submitted, _ = await api.post("/v1/executions", json={"agent_id": agent, "input": {"n": 7}})
    assert status == 202 and submitted["status"] == "PENDING", submitted
    events, response = await read_events(api, submitted["id"])

    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    kinds = [event["event"] for event in events]
    assert kinds[-1] == "final" and set(kinds[:-1]) == {"status"} and len(kinds) >= 2, events
    first = events[0]["data"]
    assert first["status"] in ("PENDING", "RUNNING") and first["id"] == submitted["id"]
    assert set(first) == {"id", "status", "error", "started_at", "finished_at"}
    states = [event["data"]["status"] for event in events[:-1]]
    assert all(a != b for a, b in itertools.pairwise(states)), f"a status repeated: {states}"
    assert states[-1] == "RUNNING" or states == ["PENDING"], states
    final = events[-1]["data"]
    assert final["status"] == "COMPLETED" and final["output"] == {"n": 7} and final["finished_at"], final
    assert [int(event["id"]) for event in events] == list(range(1, len(events) + 1))


async def test_a_final_execution_streams_its_final_event_at_once(api) -> None:
    record = await api.run(await api.register(["cat"]), {"done": True})
    assert record["status"] == "COMPLETED", record
    events, _ = await read_events(api, record["id"], headers={"Last-Event-ID": "41"}, timeout=5.0)
    assert [(event["id"], event["event"]) for event in events] == [("42", "final")]
    assert events[0]["data"] == record


async def test_another_users_execution_is_not_found(api) -> None:
    owner = await api.new_token("user")
    other = await api.new_token("user")
    agent = await api.register(["cat"])
    await api.grant(owner.subject, agent)
    record = await owner.run(agent, {})
    for caller, path in ((other, record["id"]), (owner, "not-a-uuid")):
        status, problem, headers = await caller.get(f"/v1/executions/{path}/events")
        assert status == 404 and headers["Content-Type"].startswith("application/problem+json"), problem
        assert problem["type"] == "urn:executor:problem:not_found", problem


async def test_a_quiet_stream_sends_keepalive_comments(api) -> None:
    """15 s without a change: a comment line keeps proxies from closing the stream."""
    agent = await api.register(["sh", "-c", "sleep 17; cat"], limits={"timeout_s": 30})
    status, submitted, _ = await api.post("/v1/executions", json={"agent_id": agent, "input": {}})
    assert status == 202, submitted
    comments: list[str] = []
    async with asyncio.timeout(40):
        async with api.session.get(f"{api.base_url}/v1/executions/{submitted['id']}/events",
                                   headers={"Authorization": f"Bearer {api.token}"}) as response:
            async for raw in response.content:
                if raw.startswith(b":"):
                    comments.append(raw.decode().strip())
                if raw.startswith(b"event: final"):
                    break
    assert comments and set(comments) == {": keepalive"}, comments


async def test_a_client_that_leaves_early_costs_nothing(api, service) -> None:
    agent = await api.register(["sh", "-c", "sleep 3; cat"])
    status, submitted, _ = await api.post("/v1/executions", json={"agent_id": agent, "input": {}})
    assert status == 202, submitted
    async with api.session.get(f"{api.base_url}/v1/executions/{submitted['id']}/events",
                               headers={"Authorization": f"Bearer {api.token}"}) as response:
        first = await response.content.readline()
        assert first.startswith(b"id: "), first
    record = await api.run(agent, {"again": 1})  # the service carries on
    status, done, _ = await api.get(f"/v1/executions/{submitted['id']}?wait=10")
    assert record["status"] == done["status"] == "COMPLETED", (record, done)
    await asyncio.sleep(1.5)  # past the stream's next poll, when it notices the client is gone
    errors = [line for line in service.log_path.read_text().splitlines()
              if '"level": "ERROR"' in line and "/events" in line]
    assert errors == []


async def test_state_and_finished_events_wake_change_waiters(redis_server) -> None:
    """Events.change_waiter: woken by publish_state and by publish_finished (a final state is a
    change too); Events.waiter only by publish_finished."""
    import uuid

    import redis.asyncio as redis

    from executor.queue.events import Events

    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/15")
    events = Events(client)
    await events.start()
    try:
        execution_id = uuid.uuid4()
        change, final = events.change_waiter(execution_id), events.waiter(execution_id)
        await events.publish_state(execution_id, "RUNNING")
        await asyncio.wait_for(asyncio.shield(change), 5)
        await asyncio.sleep(0.1)
        assert not final.done()
        events.discard(execution_id, change)
        change = events.change_waiter(execution_id)
        await events.publish_finished(execution_id)
        await asyncio.wait_for(asyncio.gather(asyncio.shield(change), asyncio.shield(final)), 5)
        events.discard(execution_id, change)
        events.discard(execution_id, final)
        assert execution_id not in events._waiters and execution_id not in events._change_waiters
    finally:
        await events.stop()
        await client.aclose()
