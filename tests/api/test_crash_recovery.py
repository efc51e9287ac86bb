"""A service killed with SIGKILL mid-run cleans up after itself when it starts again."""

from __future__ import annotations

import asyncio
import base64
import json

import docker

from runtimes.base import INSTANCE_LABEL, POOL_LABEL
from tests.conftest import listed_containers, serving, wait_until_running


async def test_sigkill_mid_run_then_restart(postgres, redis_server, images, docker_client: docker.DockerClient) -> None:
    # One start at most: a task cut off by the kill ends as platform_error instead of running again.
    async with serving(postgres, redis_server, "crash", redis_db="1", max_attempts="1") as (svc, api):
        agent_id = await api.register(["sleep", "300"], limits={"timeout_s": 300})
        status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
        label = await wait_until_running(docker_client, record["id"])

        # A second agent that reads its stdin gets pre-started containers.
        waiting = await api.register(["cat"])
        await api.run(waiting)
        pooled = {"label": [POOL_LABEL, f"{INSTANCE_LABEL}={svc.instance_id}"]}
        for _ in range(50):
            if listed_containers(docker_client, running_only=True, **pooled):
                break
            await asyncio.sleep(0.1)
        assert listed_containers(docker_client, running_only=True, **pooled), "no pre-started container to leave behind"

        svc.stop("KILL")
        assert listed_containers(docker_client, label=label), "the kill left no orphan to test"

        svc.start()  # same instance id, same database
        assert listed_containers(docker_client, **pooled) == []
        status, final, _ = await api.get(f"/v1/executions/{record['id']}")
        assert status == 200 and final["status"] == "FAILED", final
        assert final["error"]["type"] == "platform_error"
        status, bundle, _ = await api.get(f"/v1/executions/{record['id']}/receipt")
        assert status == 200, bundle
        statement = json.loads(base64.b64decode(bundle["envelope"]["payload"]))
        assert statement["status"] == "FAILED" and statement["error_type"] == "platform_error"
        assert listed_containers(docker_client, label=label) == []

        # And the restarted service works.
        status, again, _ = await api.post("/v1/executions?wait=30", json={"agent_id": agent_id, "input": {},
                                                                           "limits": {"timeout_s": 0.5}})
        assert again["status"] == "TIMEOUT"
