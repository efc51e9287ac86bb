"""Live progress, end to end: a follower of GET /v1/executions/{id}/events sees the task's
stderr lines (`event: stderr`) while it is still RUNNING, capped in rate and size.

Each agent sleeps a second before its first line: the follower connects right after the
submission, and lines written before it subscribed are not replayed (by design)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from tests.conftest import Api


async def follow(api: Api, execution_id: str, *, timeout: float = 60.0) -> AsyncIterator[dict[str, Any]]:
    """The stream's events as they come: {id, event, data}."""
    async with asyncio.timeout(timeout):
        async with api.session.get(f"{api.base_url}/v1/executions/{execution_id}/events",
                                   headers={"Authorization": f"Bearer {api.token}"}) as response:
            assert response.status == 200, await response.text()
            current: dict[str, Any] = {}
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    continue
                if not line:
                    if current:
                        current["data"] = json.loads(current["data"])
                        yield current
                    current = {}
                    continue
                key, _, value = line.partition(": ")
                current[key] = value


async def submit(api: Api, script: str) -> str:
    agent = await api.register(["sh", "-c", script], limits={"timeout_s": 30})
    status, submitted, _ = await api.post("/v1/executions", json={"agent_id": agent, "input": {"done": True}})
    assert status == 202, submitted
    return str(submitted["id"])


async def test_a_follower_sees_stderr_lines_while_the_task_runs(api) -> None:
    execution_id = await submit(api, "sleep 1; for i in 1 2 3 4; do echo step $i >&2; sleep 0.3; done; cat")
    events: list[dict[str, Any]] = []
    status_at_first_line = None
    async for event in follow(api, execution_id):
        events.append(event)
        if event["event"] == "stderr" and status_at_first_line is None:
            status_at_first_line = (await api.execution(execution_id))["status"]

    assert status_at_first_line == "RUNNING", events
    kinds = [event["event"] for event in events]
    assert kinds[-1] == "final" and kinds.count("final") == 1, kinds
    assert set(kinds[:-1]) == {"status", "stderr"}, kinds  # every stderr line came before the end
    lines = [event["data"] for event in events if event["event"] == "stderr"]
    first = lines[0]["seq"]
    # All the lines written since the follower subscribed, in order, numbered as written.
    assert lines == [{"line": f"step {n}", "seq": n} for n in range(first, 5)], lines
    assert [int(event["id"]) for event in events] == list(range(1, len(events) + 1))
    final = events[-1]["data"]
    assert final["status"] == "COMPLETED" and final["output"] == {"done": True}, final
    assert final == await api.execution(execution_id)  # the record is what it always was
    log = (await api.get_bytes(f"/v1/executions/{execution_id}/logs")).decode()
    assert log == "".join(f"step {n}\n" for n in range(1, 5))  # the whole log, as before


async def test_a_flood_of_stderr_lines_is_capped_in_rate_and_the_rest_counted(api) -> None:
    """2000 lines at once: the burst goes (100 lines, and what the rate of 50/s gave back
    meanwhile), the rest is dropped; the next line after a pause comes with the count."""
    execution_id = await submit(
        api, 'sleep 1; i=0; while [ $i -lt 2000 ]; do echo "flood $i" >&2; i=$((i+1)); done; '
             'sleep 0.5; echo after >&2; sleep 0.5; cat')
    events = [event async for event in follow(api, execution_id)]
    assert events[-1]["event"] == "final" and events[-1]["data"]["status"] == "COMPLETED", events[-1]
    stderr = [event["data"] for event in events if event["event"] == "stderr"]
    flood = [item for item in stderr if item.get("line", "").startswith("flood")]
    assert 100 <= len(flood) < 2000, len(flood)
    assert flood == [{"line": f"flood {n}", "seq": n + 1} for n in range(len(flood))]  # the first ones
    rest = stderr[len(flood):]
    assert rest == [{"dropped": 2000 - len(flood)}, {"line": "after", "seq": 2001}], rest


async def test_stderr_relayed_stays_within_the_line_and_log_caps(api) -> None:
    """One line of 300 000 bytes, past the log's cap (256 KiB in the test service): it comes in
    pieces of at most 4 KiB, never more in all than the log keeps, and the task ends as before."""
    execution_id = await submit(api, "sleep 1; head -c 300000 /dev/zero | tr '\\0' x >&2; cat")
    events = [event async for event in follow(api, execution_id)]
    final = events[-1]["data"]
    assert events[-1]["event"] == "final" and final["status"] == "FAILED", final
    assert final["error"]["type"] == "output_too_large", final["error"]
    pieces = [event["data"]["line"] for event in events if event["event"] == "stderr"]
    assert pieces and all(len(piece) <= 4096 and set(piece) == {"x"} for piece in pieces), [len(p) for p in pieces]
    assert sum(len(piece) for piece in pieces) <= 256 * 1024


async def test_stderr_followers_share_the_listener_and_survive_its_reconnection(redis_server) -> None:
    """Events.follow_stderr: a subscription on the listener's own connection while followed,
    renewed with it after a break, dropped with the last follower."""
    import uuid

    import redis.asyncio as redis

    from executor.queue.events import STDERR, Events

    base = redis_server.url.rsplit("/", 1)[0]
    client = redis.Redis.from_url(base + "/10", client_name="live-stderr-test")
    admin = redis.Redis.from_url(base + "/10")
    events = Events(client)
    await events.start()
    execution_id = uuid.uuid4()
    channel = f"{STDERR}{execution_id}"
    try:
        first, second = await events.follow_stderr(execution_id), await events.follow_stderr(execution_id)
        assert first.subscribed.is_set() and second.subscribed.is_set()
        await events.publish_stderr(execution_id, '{"line":"a","seq":1}', '{"line":"b","seq":2}')
        await asyncio.wait_for(first.arrived.wait(), 5)
        await asyncio.wait_for(second.arrived.wait(), 5)
        assert first.take() == second.take() == ['{"line":"a","seq":1}', '{"line":"b","seq":2}']
        ours = [c["id"] for c in await admin.client_list(_type="pubsub") if c.get("name") == "live-stderr-test"]
        assert len(ours) == 1  # one connection for the listener and all followers

        first.close()
        await admin.client_kill_filter(_id=ours[0])
        for _ in range(100):  # the listener comes back, still subscribed for the follower left
            if (await admin.pubsub_numsub(channel))[0][1] == 1:
                break
            await asyncio.sleep(0.1)
        await events.publish_stderr(execution_id, '{"line":"c","seq":3}')
        await asyncio.wait_for(second.arrived.wait(), 5)
        assert second.take() == ['{"line":"c","seq":3}'] and first.take() == []

        second.close()
        for _ in range(100):
            if (await admin.pubsub_numsub(channel))[0][1] == 0:
                break
            await asyncio.sleep(0.1)
        assert (await admin.pubsub_numsub(channel))[0][1] == 0
    finally:
        await events.stop()
        await client.aclose()
        await admin.aclose()
