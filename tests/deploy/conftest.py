"""The compose deployment, started once per session with pytest-docker: the images
built here, compose.yaml brought up under a project name of this run's own, torn
down (volumes too) at the end.

The engine is shared with other runs: everything this stack makes carries its
compose project's labels, and the task containers of its workers are told apart
by their instance label, `<worker hostname>-<random>` (the hostname of a
container is its short id), so the teardown removes only what this run made.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shlex
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from executor.settings import Settings
from runtimes.base import INSTANCE_LABEL
from runtimes.images import build_images
from tests.conftest import REPO, listed_containers

STATE_DIR = "/var/lib/executor"  # EXECUTOR_STATE_DIR of the workers in compose.yaml
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
READY_CHECK = ["python3", "-c",
               "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]


def _compose_plugin() -> bool:
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def deploy_images(docker_client: docker.DockerClient) -> dict[str, str]:
    """The stack's images and the task image, built once (cached by content across runs)."""
    built = build_images(docker_client, ["service", "postgres", "redis", "busybox"], progress=lambda line: None)
    return {image.name: image.tag for image in built}


@dataclass(frozen=True)
class StackSecrets:
    postgres_password: str
    operator_token: str


@pytest.fixture(scope="session")
def stack_secrets() -> StackSecrets:
    return StackSecrets(postgres_password=secrets.token_hex(16), operator_token="exe_e2e_" + secrets.token_urlsafe(24))


@pytest.fixture(scope="session")
def compose_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose")


@pytest.fixture(scope="session")
def compose_env_file(compose_dir: Path, stack_secrets: StackSecrets) -> Path:
    """compose.yaml's variables, in a file of this run's own (nothing goes into os.environ)."""
    path = compose_dir / "stack.env"
    path.write_text(f"POSTGRES_PASSWORD={stack_secrets.postgres_password}\n"
                    f"EXECUTOR_BOOTSTRAP_TOKEN={stack_secrets.operator_token}\n"
                    "API_BIND=127.0.0.1:\n")  # an ephemeral port on the loopback, read back with `port`
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def docker_compose_command(compose_env_file: Path) -> str:
    """The compose plugin when the engine's CLI has it, else Debian's docker-compose (1.29)."""
    if _compose_plugin():
        base = "docker compose"
    elif shutil.which("docker-compose"):
        base = "docker-compose"
    else:
        pytest.fail("neither `docker compose` nor `docker-compose` is installed"
                    " (scripts/setup installs docker-compose)")
    return f"{base} --env-file {shlex.quote(str(compose_env_file))}"


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return f"executor-e2e-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def docker_compose_file(deploy_images: dict[str, str], compose_dir: Path) -> list[str]:
    """compose.yaml, and an override with the test's settings (once the images exist: compose never pulls)."""
    worker_environment = {}
    if "job_visibility_s" in {f.name for f in dataclasses.fields(Settings)}:
        worker_environment["EXECUTOR_JOB_VISIBILITY_S"] = "5"  # a killed worker's job is reclaimed within seconds
    if not worker_environment:
        return [str(REPO / "compose.yaml")]
    override = compose_dir / "compose.e2e.yaml"  # JSON is YAML
    override.write_text(json.dumps({"version": "3.8", "services": {"worker": {"environment": worker_environment}}}))
    return [str(REPO / "compose.yaml"), str(override)]


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    # Nothing here: the `stack` fixture brings the stack up itself, so that a failed `up`
    # still ends in docker_services' teardown (pytest-docker runs no cleanup when its setup fails).
    return []


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["down -v --remove-orphans -t 60"]


@dataclass
class Stack:
    """The running stack: compose commands, its containers, the API's address."""

    command: list[str]
    project: str
    client: docker.DockerClient
    operator_token: str
    base_url: str = ""
    _worker_hostnames: set[str] = dataclasses.field(default_factory=set)
    _instance_ids: set[str] = dataclasses.field(default_factory=set)

    def compose(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run([*self.command, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout + done.stderr

    def logs(self, *services: str, tail: int = 60) -> str:
        done = subprocess.run([*self.command, "logs", "--no-color", "--tail", str(tail), *services],
                              capture_output=True, text=True, timeout=60, check=False)
        return done.stdout + done.stderr

    def containers(self, service: str) -> list[Any]:
        found = self.client.containers.list(all=True, filters={
            "label": [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]})
        if service == "worker":
            self._worker_hostnames.update(c.attrs["Config"]["Hostname"] for c in found)
        return found

    def ready(self, container: Any) -> bool:
        container.reload()
        return container.status == "running" and container.exec_run(READY_CHECK).exit_code == 0

    def instance_id(self, container: Any) -> str:
        """The worker's instance id, as it persisted it in its state dir."""
        result = container.exec_run(["cat", f"{STATE_DIR}/instance-id"])
        assert result.exit_code == 0, result.output
        instance_id = result.output.decode().strip()
        self._instance_ids.add(instance_id)
        return instance_id

    def ready_workers(self, count: int, timeout: float = 120.0) -> dict[str, Any]:
        """Wait for `count` running, ready workers; their containers by instance id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            workers = [c for c in self.containers("worker") if c.status == "running"]
            if len(workers) == count and all(self.ready(c) for c in workers):
                return {self.instance_id(c): c for c in workers}
            time.sleep(0.5)
        raise AssertionError(f"{count} ready workers did not show within {timeout:.0f} s:\n{self.logs('worker')}")

    def remove_task_containers(self) -> list[str]:
        """Containers (task or pre-started) of this stack's workers that are still there: those
        of an instance id seen, or starting with a worker's hostname (a worker that never
        answered). Only for the teardown."""
        self.containers("worker")
        prefixes = tuple(f"{hostname}-" for hostname in self._worker_hostnames)
        removed = []
        for container in listed_containers(self.client, label=INSTANCE_LABEL):
            instance_id = container["Labels"].get(INSTANCE_LABEL, "")
            if instance_id in self._instance_ids or (prefixes and instance_id.startswith(prefixes)):
                try:
                    self.client.api.remove_container(container["Id"], force=True)
                except docker.errors.NotFound:  # its worker removed it meanwhile
                    continue
                removed.append(container["Names"][0].lstrip("/"))
        return removed


def _api_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def stack(docker_services: Any, docker_compose_command: str, docker_compose_file: list[str],
          docker_compose_project_name: str, stack_secrets: StackSecrets,
          docker_client: docker.DockerClient) -> Iterator[Stack]:
    files = [part for path in docker_compose_file for part in ("-f", path)]
    running = Stack([*shlex.split(docker_compose_command), *files, "-p", docker_compose_project_name],
                    docker_compose_project_name, docker_client, stack_secrets.operator_token)
    try:
        running.compose("up", "-d")
        running.base_url = f"http://127.0.0.1:{docker_services.port_for('api', 8080)}"
        try:
            docker_services.wait_until_responsive(check=lambda: _api_ready(running.base_url), timeout=120, pause=0.5)
        except Exception:
            raise AssertionError(f"the api never became ready:\n{running.logs()}") from None
        yield running
    finally:
        # Workers first, with SIGTERM: each drains and removes its own containers. Then
        # whatever a killed one left (it removes that itself when it comes back).
        running.containers("worker")
        subprocess.run([*running.command, "stop", "-t", "60", "worker"], capture_output=True, timeout=120, check=False)
        left = running.remove_task_containers()
        if left:
            print(f"removed task containers the workers left behind: {left}")
