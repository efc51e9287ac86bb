"""Real services, started once per session: PostgreSQL, Redis, the Docker engine,
the images, and the executor service itself as a subprocess (so tests can
kill it). Nothing here is mocked.

A test that needs any of them is end-to-end: `pytest_collection_modifyitems` marks it `e2e`,
so `pytest -m "not e2e"` runs the pure-logic tests alone, with no engine, PostgreSQL or Redis.
Nothing here connects to anything before a fixture asks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import docker
import docker.errors
import pytest

from executor.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from runtimes.base import EXECUTION_LABEL, INSTANCE_LABEL, POOL_LABEL
from runtimes.images import build_images

REPO = Path(__file__).resolve().parent.parent

# The fixtures that start or reach a real service. Every other fixture that needs one depends on
# one of these (service → postgres, market_service → images → docker_client, stack → docker_services
# …), and a test's `fixturenames` is its whole closure: so a test holding none of these needs no service.
# A test that reaches a service without a fixture (it starts its own) carries `@pytest.mark.e2e` itself.
REAL_SERVICE_FIXTURES = frozenset({"docker_client", "postgres", "redis_server", "images", "docker_services"})

# The instance ids of the executor processes this session started (ServiceProcess.start): their
# containers, and only theirs, must be gone at the end. Another run on the same engine (a benchmark, a
# colleague's tests) has containers of its own that are none of this session's business.
STARTED_INSTANCES: set[str] = set()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


def new_instance_id(name: str) -> str:
    """A fresh `org.executor.instance` value for a test's own runtime or service, checked at the end."""
    instance_id = f"test-{name}-{uuid.uuid4().hex[:8]}"
    STARTED_INSTANCES.add(instance_id)
    return instance_id


def private_tmpdir(prefix: str) -> Path:
    """A temp dir the unprivileged PostgreSQL user can traverse (pytest's own are 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The engine. Everything that makes containers depends on it, so it is torn down last: then,
    after every service of this session has stopped, no container of theirs (task or pre-started)
    may be left."""
    client = docker.from_env()
    client.ping()  # no engine is a failure, never a skip
    yield client
    try:
        leftovers = [c for c in listed_containers(client, label=INSTANCE_LABEL)
                     if c["Labels"].get(INSTANCE_LABEL) in STARTED_INSTANCES]
        assert not leftovers, f"containers left behind: {[c['Labels'] for c in leftovers]}"
    finally:
        client.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    base = private_tmpdir("executor-test-pg-")
    server = EmbeddedPostgres(base, port=free_port(), durable=False)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    base = private_tmpdir("executor-test-redis-")
    server = EmbeddedRedis(base, port=free_port(), durable=False)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def images(docker_client: docker.DockerClient) -> dict[str, str]:
    """Test images, built once (cached by content across runs)."""
    built = build_images(docker_client, ["busybox", "wordcount"], progress=lambda line: None)
    return {image.name: image.tag for image in built}


@dataclass
class ServiceProcess:
    """One `executor serve` subprocess with its own database and Redis db."""

    env: dict[str, str]
    base_url: str
    operator_token: str
    instance_id: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    command: str = "serve"  # or "api" (HTTP only) or "worker" (the worker, with health and metrics)

    def start(self, timeout: float = 60.0, *, wait: bool = True) -> None:
        STARTED_INSTANCES.add(self.instance_id)
        with open(self.log_path, "ab") as log_file:  # the child writes to its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "executor", self.command], env=self.env, cwd=REPO,
                stdout=log_file, stderr=subprocess.STDOUT,
            )
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"executor serve exited: {self.log_path.read_text()[-3000:]}")
            try:
                import urllib.request

                with urllib.request.urlopen(self.base_url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"executor serve did not become ready: {self.log_path.read_text()[-3000:]}")

    def sibling(self, name: str, *, command: str = "serve", **settings: str) -> ServiceProcess:
        """Another process on the same database and Redis: a second worker of the same deployment,
        with its own instance id, port and state directory (its own signing key)."""
        port = free_port()
        state_dir = private_tmpdir(f"executor-test-{name}-")
        env = {k: v for k, v in self.env.items() if k != "EXECUTOR_FAULT_POINTS"}
        env.update(EXECUTOR_PORT=str(port), EXECUTOR_STATE_DIR=str(state_dir),
                   EXECUTOR_INSTANCE_ID=new_instance_id(name))
        env.update({f"EXECUTOR_{k.upper()}": v for k, v in settings.items()})
        return ServiceProcess(env, f"http://127.0.0.1:{port}", self.operator_token, env["EXECUTOR_INSTANCE_ID"],
                              state_dir / "service.log", command=command)

    def stop(self, sig: str = "TERM", timeout: float = 60.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            if sig == "KILL":
                self.process.kill()
            else:
                self.process.terminate()
        self.process.wait(timeout)
        self.process = None
        self.assert_kept_the_contract()

    def assert_kept_the_contract(self) -> None:
        """Fails when the service logged an answer that breaks the API contract (response_check.py)."""
        found = [line for line in self.log_path.read_text(errors="replace").splitlines()
                 if "contract violation" in line]
        assert not found, f"{self.instance_id} answered outside the API contract:\n" + "\n".join(found[:20])

    def wait_for_exit(self, timeout: float = 60.0) -> int:
        """The exit status of a process that dies by itself (a fault point)."""
        assert self.process is not None
        code = self.process.wait(timeout)
        self.process = None
        return code


# The Redis db numbers of the services that live for the whole session: another service on one of
# them would have its jobs taken (and, unknown to that worker's database, dropped) by theirs.
SESSION_REDIS_DBS = {"0": "main", "2": "runsc", "7": "market"}


def make_service(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, name: str, **settings: str) -> ServiceProcess:
    """A service on a fresh database and its own Redis db number, so services never share jobs."""
    database_url = postgres.create_database(f"{name}_{secrets.token_hex(4)}")
    redis_db = settings.pop("redis_db", "0")
    owner = SESSION_REDIS_DBS.get(redis_db, name)
    assert owner == name, f"Redis db {redis_db} is the session's {owner!r} service's: give {name!r} another"
    state_dir = private_tmpdir(f"executor-test-{name}-")
    port = free_port()
    token = "exe_test_" + secrets.token_urlsafe(16)
    instance_id = new_instance_id(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_")}
    env.update(
        EXECUTOR_DATABASE_URL=database_url,
        EXECUTOR_REDIS_URL=redis_server.url.rsplit("/", 1)[0] + f"/{redis_db}",
        EXECUTOR_STATE_DIR=str(state_dir),
        EXECUTOR_PORT=str(port),
        EXECUTOR_BOOTSTRAP_TOKEN=token,
        EXECUTOR_INSTANCE_ID=instance_id,
        # Every answer of every test is checked against the API contract (executor/api/response_check.py).
        EXECUTOR_CHECK_RESPONSES="true",
        **{f"EXECUTOR_{k.upper()}": v for k, v in settings.items()},
    )
    return ServiceProcess(env, f"http://127.0.0.1:{port}", token, instance_id, state_dir / "service.log")


@contextlib.asynccontextmanager
async def serving(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, name: str,
                  **settings: str) -> AsyncIterator[tuple[ServiceProcess, Api]]:
    """A service of a test's own (see make_service), started, with an operator client; stopped after."""
    svc = make_service(postgres, redis_server, name, **settings)
    async with started(svc) as api:
        yield svc, api


@contextlib.contextmanager
def with_api_sibling(first: ServiceProcess, name: str) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """`first` and an API-only process on its database (see sibling), both started; stopped after."""
    second = first.sibling(name, command="api")
    first.start()
    try:
        second.start()
        yield first, second
    finally:
        second.stop()
        first.stop()


@contextlib.asynccontextmanager
async def operator_clients(pair: tuple[ServiceProcess, ServiceProcess]) -> AsyncIterator[tuple[Api, Api]]:
    """The operator's client of each process of a pair."""
    first, second = pair
    async with aiohttp.ClientSession() as session:
        yield Api(session, first.base_url, first.operator_token), Api(session, second.base_url, first.operator_token)


@contextlib.asynccontextmanager
async def started(svc: ServiceProcess) -> AsyncIterator[Api]:
    """`svc` started, with an operator client; stopped after (a stop or restart the test made
    itself is fine). For a service the test sets up further before its start."""
    svc.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(session, svc.base_url, svc.operator_token)
    finally:
        svc.stop()


# A service tuned for the marketplace tests and the SDKs' flows: high rate limits, webhooks to
# localhost allowed, fast webhook retries.
MARKET_SETTINGS = {
    "redis_db": "7",
    "user_burst": "1000", "user_rate_per_s": "1000", "service_burst": "1000", "service_rate_per_s": "1000",
    "max_live_per_user": "200",
    "webhook_allow_private": "true", "webhook_retry_base_s": "0.3", "webhook_retry_max_s": "1",
    "webhook_poll_s": "0.2", "webhook_timeout_s": "5",
}


@pytest.fixture(scope="session")
def market_service(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, images: dict[str, str]
                   ) -> Iterator[ServiceProcess]:
    svc = make_service(postgres, redis_server, "market", **MARKET_SETTINGS)
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def service(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, images: dict[str, str],
            docker_client: docker.DockerClient) -> Iterator[ServiceProcess]:
    svc = make_service(postgres, redis_server, "main", max_output_bytes=str(1024 * 1024), max_log_bytes=str(256 * 1024))
    svc.start()
    yield svc
    svc.stop()


def listed_containers(client: docker.DockerClient, *, running_only: bool = False,
                      **filters: Any) -> list[dict[str, Any]]:
    """The engine's own listing (Id, Names, Labels, State) of the containers that match.

    One call and no inspect: `containers.list()` inspects each listed container, and one
    removed in between (a pool refilling, a worker cleaning up) fails the listing with 404."""
    return client.api.containers(all=not running_only, filters=filters)


async def wait_until_running(client: docker.DockerClient, execution_id: str, timeout: float = 10.0) -> str:
    """The label filter of an execution's container, once that container runs."""
    label = f"{EXECUTION_LABEL}={execution_id}"
    for _ in range(int(timeout / 0.1)):
        if listed_containers(client, running_only=True, label=label, status="running"):
            return label
        await asyncio.sleep(0.1)
    raise AssertionError(f"the task of execution {execution_id} never started")


def pooled_containers(client: docker.DockerClient, instance_id: str, command: list[str]) -> list[Any]:
    """The pre-started containers of an instance for one command."""
    for _ in range(10):
        try:
            found = client.containers.list(filters={"label": [POOL_LABEL, f"{INSTANCE_LABEL}={instance_id}"]})
        except docker.errors.NotFound:  # one was removed between the list and its inspect: list again
            continue
        return [c for c in found if c.attrs["Config"]["Cmd"] == command]
    raise AssertionError("the pool's containers kept changing while being listed")


@pytest.fixture(scope="session")
def runsc_service(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, images: dict[str, str],
                  docker_client: docker.DockerClient) -> Iterator[ServiceProcess]:
    """A second service whose every task runs under gVisor (scripts/setup registers runsc)."""
    assert "runsc" in docker_client.info().get("Runtimes", {}), "runsc is not registered with the engine"
    svc = make_service(postgres, redis_server, "runsc", redis_db="2", oci_runtime="runsc")
    svc.start()
    yield svc
    svc.stop()


class Api:
    """A thin HTTP client for tests: every call returns (status, body, headers)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None,
                 subject: str | None = None) -> None:
        self.session = session
        self.base_url = base_url
        self.token = token
        self.subject = subject  # of the token, when a test made it

    def as_token(self, token: str | None, subject: str | None = None) -> Api:
        return Api(self.session, self.base_url, token, subject)

    async def new_token(self, role: str, subject: str | None = None) -> Api:
        """A client holding a fresh token of `role` (this client must be an operator's)."""
        subject = subject or f"{role[0]}-{uuid.uuid4().hex[:8]}"
        status, issued, _ = await self.post("/v1/tokens", json={"role": role, "subject": subject})
        assert status == 201, issued
        return self.as_token(issued["token"], subject)

    async def grant(self, user: str, agent_id: str, **terms: Any) -> dict[str, Any]:
        """Grant `user` the agent (this client must be a service's or an operator's)."""
        status, entitlement, _ = await self.request("PUT", "/v1/entitlements",
                                                    json={"user": user, "agent_id": agent_id, **terms})
        assert status in (200, 201), entitlement
        return entitlement

    async def request(self, method: str, path: str, *, json: Any = None, data: bytes | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        all_headers = dict(headers or {})
        if self.token is not None:
            all_headers.setdefault("Authorization", f"Bearer {self.token}")
        async with self.session.request(method, self.base_url + path, json=json, data=data,
                                        headers=all_headers) as response:
            raw = await response.read()
            kind = response.headers.get("Content-Type", "")
            body: Any = raw
            if "json" in kind:
                import json as jsonlib

                body = jsonlib.loads(raw)
            return response.status, body, response.headers

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        return await self.request("GET", path, **kwargs)

    async def execution(self, execution_id: str) -> dict[str, Any]:
        """The execution's record (asserting it is there)."""
        status, record, _ = await self.get(f"/v1/executions/{execution_id}")
        assert status == 200, record
        return record

    async def get_bytes(self, path: str) -> bytes:
        """The exact body of a 200 answer, whatever its content type."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.session.get(self.base_url + path, headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.read()

    async def post(self, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        return await self.request("POST", path, **kwargs)

    async def register(self, command: list[str] | None, *, image: str = "executor/busybox:latest",
                       input_schema: Any = None, output_schema: Any = None, limits: Any = None) -> str:
        body = {
            "name": f"test-{uuid.uuid4().hex[:12]}",
            "image": image,
            "command": command,
            "input_schema": input_schema if input_schema is not None else {"type": "object"},
            "output_schema": output_schema if output_schema is not None else True,
        }
        if limits is not None:
            body["limits"] = limits
        status, agent, _ = await self.post("/v1/agents", json=body)
        assert status == 201, agent
        return agent["id"]

    async def run(self, agent_id: str, input: Any = None, *, wait: float = 30, limits: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {"agent_id": agent_id, "input": {} if input is None else input}
        if limits is not None:
            body["limits"] = limits
        status, record, _ = await self.post(f"/v1/executions?wait={wait}", json=body)
        assert status in (201, 202), record
        return record


@pytest.fixture
async def api(service: ServiceProcess) -> Any:
    async with aiohttp.ClientSession() as session:
        yield Api(session, service.base_url, service.operator_token)


@pytest.fixture
async def runsc_api(runsc_service: ServiceProcess) -> Any:
    async with aiohttp.ClientSession() as session:
        yield Api(session, runsc_service.base_url, runsc_service.operator_token)


@pytest.fixture
async def user_api(api: Api) -> Api:
    """An API client holding a fresh `user` token (its subject in `.subject`)."""
    return await api.new_token("user")
