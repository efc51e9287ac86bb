"""Redis, PostgreSQL and the Docker engine restarted during runs: no accepted execution is
lost, each reaches exactly one final state, and /readyz says which dependency is down.

Each test runs its own Redis, PostgreSQL or Docker engine, so restarting it disturbs
nothing else."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
import docker

from executor.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from runtimes.base import EXECUTION_LABEL
from runtimes.images import build_images
from tests.api.conftest import wait_for
from tests.conftest import Api, make_service, private_tmpdir, serving, started


async def _ready(api: Api) -> dict:
    _status, body, _ = await api.get("/readyz")
    return body


async def _all_final(api: Api, ids: list[str]) -> list[dict] | None:
    records = []
    for execution_id in ids:
        try:
            status, record, _ = await api.get(f"/v1/executions/{execution_id}")
        except aiohttp.ClientError:
            return None
        if status != 200 or record["status"] in ("PENDING", "RUNNING"):
            return None
        records.append(record)
    return records


async def _submit(api: Api, agent_id: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        status, record, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {"i": i}})
        assert status == 202, record
        ids.append(record["id"])
    return ids


async def _check_once_each(database_url: str, ids: list[str]) -> None:
    db = await asyncpg.connect(database_url)
    try:
        parsed = [uuid.UUID(i) for i in ids]
        assert await db.fetchval("SELECT count(*) FROM receipts WHERE execution_id = ANY($1)", parsed) == len(ids)
        assert await db.fetchval("SELECT size FROM log_state") == await db.fetchval("SELECT count(*) FROM receipts")
    finally:
        await db.close()


async def test_a_redis_restart_during_runs_loses_no_execution(postgres, images) -> None:
    base = private_tmpdir("executor-test-redis-restart-")
    redis_server = EmbeddedRedis(base, port=free_port(), durable=False)
    redis_server.start()
    try:
        async with serving(postgres, redis_server, "redis_restart", redis_db="1", worker_concurrency="2",
                           pool_enabled="false", job_visibility_s="2") as (svc, api):
            agent_id = await api.register(["sh", "-c", "sleep 2; cat"])
            ids = await _submit(api, agent_id, 6)  # 2 run, 4 wait in the stream
            await asyncio.sleep(0.5)
            redis_server.stop()  # not durable: the stream and its jobs are gone
            down = await wait_for(lambda: _down(api, "redis"))
            assert down["checks"]["postgresql"] == "ok"
            status, problem, _ = await api.post("/v1/executions", json={"agent_id": agent_id, "input": {}})
            assert status == 503, problem  # refused, not accepted and lost
            redis_server.start()
            records = await wait_for(lambda: _all_final(api, ids), timeout=90)
            assert [r["status"] for r in records] == ["COMPLETED"] * 6, records
            assert (await _ready(api))["status"] == "ready"
            ids += await _submit(api, agent_id, 1)  # and it takes work again
            await wait_for(lambda: _all_final(api, ids), timeout=60)
            await _check_once_each(svc.env["EXECUTOR_DATABASE_URL"], ids)
    finally:
        redis_server.stop()
        shutil.rmtree(base, ignore_errors=True)


async def test_a_postgresql_restart_during_runs_loses_no_execution(redis_server, images) -> None:
    base = private_tmpdir("executor-test-pg-restart-")
    server = EmbeddedPostgres(base, port=free_port(), durable=False)
    server.start()
    try:
        async with serving(server, redis_server, "pg_restart", redis_db="13", worker_concurrency="2",
                           pool_enabled="false") as (svc, api):
            agent_id = await api.register(["sh", "-c", "sleep 2; cat"])
            ids = await _submit(api, agent_id, 4)
            await asyncio.sleep(0.5)
            server.stop()  # the running tasks end while it is down: their ends wait for it
            down = await wait_for(lambda: _down(api, "postgresql"))
            assert down["checks"]["redis"] == "ok"
            await asyncio.sleep(3)
            server.start()
            records = await wait_for(lambda: _all_final(api, ids), timeout=120)
            assert [r["status"] for r in records] == ["COMPLETED"] * 4, records
            assert (await _ready(api))["status"] == "ready"
            await _check_once_each(svc.env["EXECUTOR_DATABASE_URL"], ids)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


async def _down(api: Api, name: str) -> dict | None:
    try:
        status, body, _ = await api.get("/readyz")
    except aiohttp.ClientError:
        return None
    return body if status == 503 and body["checks"][name] == "down" else None


class PrivateEngine:
    """A Docker engine of this test's own (its socket, data root and containerd), so that
    restarting it kills no other test's containers."""

    def __init__(self) -> None:
        self.base = private_tmpdir("executor-test-dockerd-")
        self.socket = self.base / "docker.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        # dockerd keeps its own copy of the log's descriptor: ours can close once it has started.
        with open(self.base / "dockerd.log", "ab") as log:
            self.process = subprocess.Popen(
                ["dockerd", f"--host={self.host}", f"--data-root={self.base / 'data'}",
                 f"--exec-root={self.base / 'exec'}", f"--pidfile={self.base / 'docker.pid'}", "--bridge=none",
                 "--iptables=false", "--ip-masq=false", "--shutdown-timeout=1"],
                stdout=log, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                docker.DockerClient(base_url=self.host).close()  # it asks the engine its API version
                return
            except docker.errors.DockerException:
                time.sleep(0.1)
        raise RuntimeError((self.base / "dockerd.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
            self.process = None

    def remove(self) -> None:
        """Stop it, unmount what it left mounted under its directory (its netns), delete it all."""
        self.stop()
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.base))]
        for mount in sorted(mounts, reverse=True):
            subprocess.run(["umount", mount], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


async def test_a_docker_engine_restart_during_runs_loses_no_execution(postgres, redis_server) -> None:
    engine = PrivateEngine()
    try:
        engine.start()
        client = docker.DockerClient(base_url=engine.host)
        build_images(client, ["busybox"], progress=lambda line: None)
        svc = make_service(postgres, redis_server, "engine_restart", redis_db="14", worker_concurrency="2",
                           pool_enabled="false", job_visibility_s="2")
        svc.env["DOCKER_HOST"] = engine.host
        async with started(svc) as api:
            agent_id = await api.register(["sh", "-c", "sleep 3; cat"])
            ids = await _submit(api, agent_id, 4)  # 2 run when the engine goes, 2 wait
            await wait_for(lambda: _running(client, 2))
            engine.stop()  # kills the 2 running tasks' containers
            down = await wait_for(lambda: _down(api, "docker"))
            assert down["checks"]["postgresql"] == "ok" and down["checks"]["redis"] == "ok"
            await asyncio.sleep(2)
            engine.start()
            records = await wait_for(lambda: _all_final(api, ids), timeout=120)
            cut = [r for r in records if r["status"] == "FAILED"]
            # The ones the restart cut off end as platform_error with the reason; those
            # that had not started then run once the engine is back.
            assert all(r["error"]["type"] == "platform_error" for r in cut), cut
            assert len(cut) <= 2 and sum(r["status"] == "COMPLETED" for r in records) >= 2, records
            assert all(r["cost"] is None or r["cost"]["amount"] == 0 for r in cut)
            assert (await _ready(api))["status"] == "ready"
            # The cut-off tasks' containers (left by the failed removals) are swept.
            await wait_for(lambda: _no_containers(client), timeout=60)
            await _check_once_each(svc.env["EXECUTOR_DATABASE_URL"], ids)
        assert client.containers.list(all=True, sparse=True) == []
        client.close()
    finally:
        engine.remove()


async def _running(client: docker.DockerClient, count: int) -> bool:
    return len(client.containers.list(sparse=True, filters={"label": EXECUTION_LABEL})) >= count


async def _no_containers(client: docker.DockerClient) -> bool:
    return client.containers.list(all=True, sparse=True) == []
