"""Pre-started single-use containers, end to end through HTTP on the real engine.

The pool runs in the service's process: a test waits for the condition itself (a pre-started
container on the engine), with a generous bound, since a loaded engine is slow; past it, the
failure says what the pool said (its status and its own log lines).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

from runtimes.pool_sizing import EVICT_AFTER_S
from tests.api.test_execution_lifecycle import HARDENING_PROBE, assert_hardened
from tests.conftest import (
    REPO,
    pooled_containers,
    serving,
    wait_until_running,
)

WAIT_S = 60.0  # for a pre-started container: a start takes 0.1-0.5 s; under load, seconds


def pool_log(service: Any, lines: int = 12) -> str:
    """The pool's own account in the service's log: why it closed a shelf, why a start failed."""
    found = [line for line in service.log_path.read_text(errors="replace").splitlines() if "runtimes.pool" in line]
    return "\n".join(found[-lines:]) or "(nothing)"


async def wait_for_pre_started(api: Any, service: Any, found: Callable[[], list[Any]], what: str, *,
                               count: int = 1, timeout_s: float = WAIT_S) -> list[Any]:
    """Until `found()` lists `count` pre-started containers (of `what`); else a failure that says
    what the pool was doing."""
    for _ in range(int(timeout_s / 0.1)):
        containers = found()
        if len(containers) >= count:
            return containers
        await asyncio.sleep(0.1)
    _, current, _ = await api.get("/v1/status")
    raise AssertionError(f"fewer than {count} pre-started container(s) for {what} after {timeout_s:.0f} s"
                         f" ({len(found())} now); pool: {current.get('pool')}; its log:\n{pool_log(service)}")


async def wait_for_pooled(api: Any, service: Any, docker_client: Any, command: list[str], count: int = 1) -> list[Any]:
    """Until `count` pre-started containers wait for `command`."""
    return await wait_for_pre_started(api, service, lambda: pooled_containers(docker_client, service.instance_id,
                                                                              command), str(command), count=count)

LEAVE_TRACES = r"""
cat > /dev/null
before=$(ls -A /tmp | tr '\n' ' ')
marker=$(cat /tmp/marker 2>/dev/null)
others=$(ps -o comm | grep -c '^sleep$')
echo "secret of the previous task" > /tmp/marker
(sleep 300 &)
printf '{"tmp_before":"%s","marker":"%s","sleepers":%s}' "$before" "$marker" "$others"
"""
async def test_consecutive_tasks_share_nothing(api, service, docker_client) -> None:
    command = ["sh", "-c", LEAVE_TRACES]
    agent_id = await api.register(command)
    records = []
    for _ in range(3):
        records.append(await api.run(agent_id))
        await wait_for_pooled(api, service, docker_client, command)
    assert [r["status"] for r in records] == ["COMPLETED"] * 3, records
    assert records[0]["pooled"] is False  # a new agent: the pool had nothing for it yet
    assert records[1]["pooled"] is True and records[2]["pooled"] is True
    for record in records:
        # Each task sees an empty /tmp, no file and no process left by the task before it.
        assert record["output"] == {"tmp_before": "", "marker": "", "sleepers": 0}


async def test_hardening_holds_in_a_pooled_container(api, service, docker_client) -> None:
    command = ["sh", "-c", "cat > /dev/null\n" + HARDENING_PROBE]
    agent_id = await api.register(command)
    await api.run(agent_id)
    await wait_for_pooled(api, service, docker_client, command)
    record = await api.run(agent_id)
    assert record["status"] == "COMPLETED" and record["pooled"] is True, record
    assert_hardened(record["output"])


async def test_cold_when_empty_and_a_burst_larger_than_the_pool(api) -> None:
    agent_id = await api.register(["cat"], limits={"memory_mb": 40})
    first = await api.run(agent_id, {"n": -1})
    assert first["status"] == "COMPLETED" and first["pooled"] is False and first["output"] == {"n": -1}
    results = await asyncio.gather(*(api.run(agent_id, {"n": n}) for n in range(12)))
    assert [r["status"] for r in results] == ["COMPLETED"] * 12
    assert [r["output"] for r in results] == [{"n": n} for n in range(12)]


async def test_a_pooled_container_killed_from_outside_is_never_handed_out(
        api, service, docker_client) -> None:
    command = ["sh", "-c", "cat  # killed from outside"]
    agent_id = await api.register(command)
    await api.run(agent_id)
    victims = await wait_for_pooled(api, service, docker_client, command)
    for container in victims:
        container.kill()
    record = await api.run(agent_id, {"still": "works"})
    assert record["status"] == "COMPLETED" and record["output"] == {"still": "works"}, record


async def test_the_timeout_of_a_pooled_task_counts_from_the_claim(api, service, docker_client) -> None:
    command = ["sh", "-c", "cat > /dev/null; sleep 1; echo '{}'"]
    agent_id = await api.register(command, limits={"timeout_s": 2})
    await api.run(agent_id)
    await wait_for_pooled(api, service, docker_client, command)
    await asyncio.sleep(2.5)  # the pooled container has now been up longer than the timeout
    record = await api.run(agent_id)
    assert record["pooled"] is True and record["status"] == "COMPLETED", record
    assert 1000 <= record["usage"]["wall_ms"] < 2000


async def test_pool_visible_in_metrics_and_executor_status(api, service, docker_client) -> None:
    command = ["sh", "-c", "cat  # metrics"]
    agent_id = await api.register(command)
    await api.run(agent_id)
    await wait_for_pooled(api, service, docker_client, command)
    assert (await api.run(agent_id))["pooled"] is True
    status, text, headers = await api.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    metrics = dict(line.rsplit(" ", 1) for line in text.decode().splitlines() if not line.startswith("#"))
    assert float(metrics["executor_pool_hits_total"]) >= 1 and float(metrics["executor_pool_misses_total"]) >= 1
    assert float(metrics["executor_pool_refill_seconds_count"]) >= 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_")}
    env.update(EXECUTOR_TOKEN=service.operator_token)
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "executor", "status", "--url",
                                                    service.base_url], env=env, cwd=REPO, capture_output=True,
                                   text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "hit rate" in done.stdout and service.instance_id in done.stdout
    status, _, _ = await api.as_token(None).get("/metrics")
    assert status == 401


async def test_an_agent_busy_before_its_input_is_not_pooled(api, service, docker_client) -> None:
    """Pre-started containers must wait for their input: one that burns CPU unclaimed
    would run on nobody's account, so its agent is kept to cold starts."""
    command = ["sh", "-c", "while :; do :; done  # never reads stdin"]
    agent_id = await api.register(command, limits={"timeout_s": 0.5, "cpus": 0.5})
    record = await api.run(agent_id)
    assert record["status"] == "TIMEOUT"
    await wait_for_pooled(api, service, docker_client, command)
    for _ in range(600):  # 4 busy samples and 2 s of CPU (4 s at half a core) get it closed; generous
        if not pooled_containers(docker_client, service.instance_id, command):
            break
        await asyncio.sleep(0.1)
    _, current, _ = await api.get("/v1/status")
    assert pooled_containers(docker_client, service.instance_id, command) == [], (current, pool_log(service))
    assert current["pool"]["closed_shelves"] >= 1
    record = await api.run(agent_id)
    assert record["status"] == "TIMEOUT" and record["pooled"] is False


async def test_a_busy_worker_pre_starts_nothing(postgres, redis_server, images, docker_client) -> None:
    """With its one slot taken, the worker pre-starts no container (no task could take it before
    this one ends, and its start would compete with the task); once the slot is free, the agent's
    floor is pre-started again."""
    async with serving(postgres, redis_server, "busy_pool", redis_db="12", worker_concurrency="1") as (svc, api):
        command = ["sh", "-c", "sleep 3; cat"]
        agent_id = await api.register(command)
        status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {"n": 1}})
        assert status == 202, record
        await wait_until_running(docker_client, record["id"])
        for _ in range(15):  # 1.5 s of the task's 3 s: three of the pool's ticks, and nothing starts
            assert pooled_containers(docker_client, svc.instance_id, command) == []
            await asyncio.sleep(0.1)
        status, final, _ = await api.get(f"/v1/executions/{record['id']}?wait=30")
        assert final["status"] == "COMPLETED" and final["output"] == {"n": 1}, final
        await wait_for_pooled(api, svc, docker_client, command)


async def _register_with_pool(api, command: list[str], pool: dict[str, int]) -> str:
    body = {"name": f"test-{uuid.uuid4().hex[:12]}", "image": "executor/busybox:latest", "command": command,
            "input_schema": {"type": "object"}, "output_schema": True, "pool": pool}
    status, agent, _ = await api.post("/v1/agents", json=body)
    assert status == 201 and agent["pool"] == pool, agent
    return agent["id"]


async def test_an_agent_whose_pool_is_off_never_gets_a_pre_started_container(
        postgres, redis_server, images, docker_client) -> None:
    """Two agents with the same image, command and limits share a shelf of identical containers;
    the one registered with `pool: {min: 0, max: 0}` still always starts cold, and its setting
    does not take the other's pre-started containers away."""
    async with serving(postgres, redis_server, "pool_owners", redis_db="8") as (svc, api):
        command = ["sh", "-c", f"cat  # shared shelf {uuid.uuid4().hex[:8]}"]
        pooled_agent = await _register_with_pool(api, command, {"min": 1, "max": 4})
        cold_agent = await _register_with_pool(api, command, {"min": 0, "max": 0})
        first = await api.run(pooled_agent, {"n": 0})
        assert first["status"] == "COMPLETED" and first["pooled"] is False, first  # creates the shelf
        cold, warm = [], []
        for n in range(3):
            # A pre-started container of the very kind both agents run waits on the shelf...
            await wait_for_pooled(api, svc, docker_client, command)
            # ...and the pool-off agent's task still starts cold, leaving it there...
            cold.append(await api.run(cold_agent, {"n": n}))
            assert cold[-1]["pooled"] is False, f"the pool-off agent got a pre-started container: {cold[-1]}"
            await wait_for_pooled(api, svc, docker_client, command)
            # ...for the agent whose pool is on.
            warm.append(await api.run(pooled_agent, {"n": n}))
            assert warm[-1]["pooled"] is True, f"the pooled agent started cold: {warm[-1]}"
        assert [(r["status"], r["output"]) for r in cold + warm] == [("COMPLETED", {"n": n}) for n in range(3)] * 2


async def test_shelves_idle_a_while_give_way_at_the_cap_to_an_agent_with_demand(
        postgres, redis_server, images, docker_client) -> None:
    """At the operator's cap, the floors of agents nobody has asked for in a while must not keep
    a newly busy agent's tasks cold until those agents are retired (idle_s, two minutes)."""
    async with serving(postgres, redis_server, "pool_cap", redis_db="8",
                       pool_max_containers="2", pool_default_max="2") as (svc, api):
        commands = [["sh", "-c", f"cat  # at the cap {n} {uuid.uuid4().hex[:8]}"] for n in range(3)]
        agents = [await api.register(command) for command in commands]
        for agent, command in zip(agents[:2], commands[:2], strict=True):
            assert (await api.run(agent))["status"] == "COMPLETED"
            await wait_for_pooled(api, svc, docker_client, command)
        await asyncio.sleep(EVICT_AFTER_S + 1)  # both quiet for a while; the cap is reached
        assert (await api.run(agents[2]))["pooled"] is False  # its first task: no shelf yet
        await wait_for_pooled(api, svc, docker_client, commands[2])
        record = await api.run(agents[2], {"n": 2})
        assert record["pooled"] is True and record["output"] == {"n": 2}, record
