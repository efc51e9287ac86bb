"""compose.yaml end to end: the api, workers, PostgreSQL and Redis as containers from
images built here, tasks on the host's engine through the workers' socket.

One execution through the stack; then three workers, one of them killed (SIGKILL)
in the middle of a task: the execution still ends once, on another worker, and the
killed worker cleans up after itself when it comes back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import aiohttp
import docker

from runtimes.base import EXECUTION_LABEL, INSTANCE_LABEL
from tests.conftest import Api, listed_containers
from tests.deploy.conftest import Stack

FINAL = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"}
KILLED_WORKER_BOUND_S = 90.0  # from the kill to a final state


async def test_an_execution_runs_through_the_stack(stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        operator = Api(session, stack.base_url, stack.operator_token)  # the api's bootstrap token
        service = await operator.new_token("service")
        agent_id = await service.register(["cat"])  # executor/busybox:latest, pinned to its id by the api
        record = await service.run(agent_id, {"text": "through compose"}, wait=30)
        assert record["status"] == "COMPLETED", (record, stack.logs("worker"))
        assert record["output"] == {"text": "through compose"}
        status, again, _ = await operator.get(f"/v1/executions/{record['id']}")
        assert status == 200 and again["status"] == "COMPLETED"


async def test_a_killed_workers_execution_ends_once_on_another(stack: Stack,
                                                               docker_client: docker.DockerClient) -> None:
    stack.compose("up", "-d", "--no-deps", "--no-recreate", "--scale", "worker=3", "worker")
    workers = stack.ready_workers(3)
    assert len(workers) == 3, f"instance ids are not distinct: {list(workers)}"

    async with aiohttp.ClientSession() as session:
        operator = Api(session, stack.base_url, stack.operator_token)
        service = await operator.new_token("service")
        status, agent, _ = await service.post("/v1/agents", json={
            "name": f"slow-{uuid.uuid4().hex[:8]}", "image": "executor/busybox:latest",
            "command": ["sh", "-c", "sleep 8; cat"], "input_schema": {"type": "object"}, "output_schema": True,
            "limits": {"timeout_s": 30},
            "pool": {"min": 0, "max": 0},  # cold starts only: a task container carries its execution's label
        })
        assert status == 201, agent
        payload = {"n": 42}
        status, record, _ = await service.post("/v1/executions", json={"agent_id": agent["id"], "input": payload})
        assert status == 202, record
        execution_id = record["id"]

        task = await _task_container(docker_client, execution_id)
        # The workers hold the engine's socket; their tasks get nothing of the host.
        assert task.attrs["Mounts"] == [] and not task.attrs["HostConfig"].get("Binds"), task.attrs["Mounts"]
        victim_instance = task.labels[INSTANCE_LABEL]
        assert victim_instance in workers, (victim_instance, list(workers))
        victim = workers[victim_instance]
        # Everything the victim has on the engine now: this task and any pre-started container.
        left_behind = {c["Id"] for c in listed_containers(docker_client, label=f"{INSTANCE_LABEL}={victim_instance}")}
        victim.kill()
        killed_at = time.monotonic()
        victim.wait(timeout=30)  # SIGKILL: no drain, no cleanup, its task left running on the engine

        final, runners = await _final_record(operator, docker_client, execution_id, KILLED_WORKER_BOUND_S)
        took = time.monotonic() - killed_at
        victim.reload()
        assert victim.status == "exited", f"the killed worker came back by itself ({victim.status})"

        # The victim comes back (same container, same state dir, same instance id) and
        # removes what it left on the engine before it takes work again.
        stack.compose("up", "-d", "--no-deps", "--no-recreate", "--scale", "worker=3", "worker")
        back = stack.ready_workers(3)
        assert victim_instance in back, f"the restarted worker has another instance id: {list(back)}"
        assert final is not None, (
            f"execution {execution_id} was still not final {KILLED_WORKER_BOUND_S:.0f} s after its worker was killed"
            f" (record: {await operator.execution(execution_id)}); workers:\n{stack.logs('worker')}")
        still_there = [c["Names"] for c in listed_containers(docker_client) if c["Id"] in left_behind]
        assert still_there == [], f"the restarted worker left its old containers: {still_there}"
        assert final["status"] in ("COMPLETED", "FAILED"), final
        if final["status"] == "COMPLETED":
            # Run again from the start, on another worker.
            assert final["output"] == payload, final
            assert runners - {victim_instance}, f"no other worker ran the task: {runners}"
            if final.get("worker") is not None:  # the record names who finished it (when it does)
                assert final["worker"] != victim_instance and final["worker"] in runners, (final, runners)
        else:  # given up after its last allowed start
            assert final["error"]["type"] == "platform_error", final
        print(f"execution {execution_id}: {final['status']} {took:.1f} s after the kill; ran on {sorted(runners)}")

        # Exactly one end: the restart changed nothing of it, and its one receipt says the same.
        again = await operator.execution(execution_id)
        assert (again["status"], again["finished_at"], again.get("error")) == \
            (final["status"], final["finished_at"], final.get("error")), (final, again)
        status, bundle, _ = await operator.get(f"/v1/executions/{execution_id}/receipt")
        assert status == 200, bundle
        statement = json.loads(base64.b64decode(bundle["envelope"]["payload"]))
        assert statement["status"] == final["status"], statement


async def _task_container(client: docker.DockerClient, execution_id: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for found in listed_containers(client, running_only=True, label=f"{EXECUTION_LABEL}={execution_id}"):
            try:
                return client.containers.get(found["Id"])
            except docker.errors.NotFound:  # ended and removed since the listing: look again
                continue
        await asyncio.sleep(0.1)
    raise AssertionError(f"the task of execution {execution_id} never started")


async def _final_record(api: Api, client: docker.DockerClient, execution_id: str,
                        timeout: float) -> tuple[dict[str, Any] | None, set[str]]:
    """The record once final (None past the timeout), and the instances seen running its task."""
    runners: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for container in listed_containers(client, label=f"{EXECUTION_LABEL}={execution_id}"):
            runners.add(container["Labels"].get(INSTANCE_LABEL, ""))
        record = await api.execution(execution_id)
        if record["status"] in FINAL:
            return record, runners
        await asyncio.sleep(0.5)
    return None, runners
