"""The service's engine client against the real engine: one keep-alive pool for docker-py's
calls, and a task's lifecycle calls over the socket on the event loop."""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import requests.exceptions
from docker.transport.unixconn import UnixHTTPConnection

from runtimes.base import INSTANCE_LABEL, TaskLimits, TaskSpec, Termination
from runtimes.container import ContainerRuntime
from runtimes.engine import DockerEngine
from runtimes.launcher import ContainerLauncher
from tests.conftest import listed_containers, new_instance_id

# Every test here drives the real engine, some without asking for a fixture.
pytestmark = pytest.mark.e2e


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the connections opened to the engine's socket (the real connect still runs)."""
    opened: list[int] = []
    real = UnixHTTPConnection.connect

    def connect(self: UnixHTTPConnection) -> None:
        opened.append(1)
        real(self)

    monkeypatch.setattr(UnixHTTPConnection, "connect", connect)
    return opened


def _pools_after_calls(api: docker.APIClient, ids: list[str]) -> int:
    """Connection pools left after one call per container id."""
    for container_id in ids:
        with pytest.raises(docker.errors.NotFound):
            api.inspect_container(container_id)
    return len(api.adapters["http+docker://"].pools)


def test_calls_on_many_containers_share_one_connection(connects: list[int]) -> None:
    engine = DockerEngine(threads=4)
    connects.clear()  # the client's version check at its creation
    try:
        assert engine.api.trust_env is False  # no proxy lookup in the environment per call
        assert _pools_after_calls(engine.api, [uuid.uuid4().hex for _ in range(30)]) == 1
        assert len(connects) == 1
    finally:
        engine.close()


def test_stock_docker_py_opens_a_connection_per_container_url(connects: list[int]) -> None:
    """What the tuning is for (and what bench/'s raw docker-py reference keeps): docker-py keys
    its pools by URL, so every container's first call opens a new connection."""
    client = docker.from_env(max_pool_size=4)
    connects.clear()
    try:
        assert _pools_after_calls(client.api, [uuid.uuid4().hex for _ in range(30)]) == 25
        assert len(connects) == 30
    finally:
        client.close()


def test_a_client_given_is_used_as_it_is() -> None:
    client = docker.from_env(max_pool_size=4)
    engine = DockerEngine(threads=4, client=client)
    try:
        assert engine.api is client.api and client.api.trust_env is True and engine.socket is None
    finally:
        engine.close()


# A task's lifecycle over the socket (runtimes/engine_socket.py), and through docker-py when
# the engine is not on a unix socket this process opened.

def _spec(image: str, command: list[str], stdin: bytes = b"") -> TaskSpec:
    return TaskSpec(execution_id=f"engine-{uuid.uuid4().hex[:8]}", image=image, command=command, stdin=stdin,
                    limits=TaskLimits(memory_mb=64, cpus=0.5, pids=16, timeout_s=20.0),
                    max_output_bytes=1 << 20, max_log_bytes=1 << 20, tmpfs_mb=4)


@pytest.fixture(scope="module")
def busybox(images: dict[str, str]) -> str:
    return images["busybox"]


@pytest.mark.parametrize("direct", [True, False], ids=["socket", "docker-py"])
async def test_a_task_runs_over_either_path(busybox: str, docker_client: docker.DockerClient, direct: bool) -> None:
    engine = DockerEngine(threads=4) if direct else DockerEngine(threads=4, client=docker.from_env())
    assert (engine.socket is not None) is direct
    runtime = ContainerRuntime(ContainerLauncher(engine, instance_id=new_instance_id("engine")))
    try:
        # Output written at once after the start, on both streams: none of it is lost, and
        # nothing of the attach answer's head is taken for a frame.
        script = "echo out; echo err >&2; cat; exit 3"
        result = await runtime.run(_spec(busybox, ["sh", "-c", script], b"the input"), asyncio.Event())
        assert (result.termination, result.exit_code) == (Termination.EXITED, 3)
        assert (result.stdout, result.stderr) == (b"out\nthe input", b"err\n")
        await runtime.launcher.drain()
        assert listed_containers(docker_client, label=f"{INSTANCE_LABEL}={runtime.launcher.instance_id}") == []
    finally:
        await engine.aclose()


async def test_the_socket_answers_with_docker_py_errors(busybox: str, docker_client: docker.DockerClient) -> None:
    engine = DockerEngine(threads=4)
    try:
        missing = uuid.uuid4().hex
        for call in (engine.start, engine.wait, engine.kill, engine.inspect_container, engine.attach):
            with pytest.raises(docker.errors.NotFound):
                await call(missing)
        with pytest.raises(docker.errors.ImageNotFound):
            await engine.create_container(image=f"executor/none:{missing[:12]}", command=["true"])
        with pytest.raises(docker.errors.APIError) as refused:  # a 400 from the engine, as docker-py gives it
            await engine.create_container(image=busybox, command=["true"], host_config={"Memory": 1024})
        assert refused.value.status_code == 400 and refused.value.explanation
        with pytest.raises(docker.errors.NotFound):
            await engine.remove_container(missing)
    finally:
        await engine.aclose()


async def test_an_engine_away_is_a_connection_error(busybox: str, tmp_path: Path) -> None:
    """What the runtime reads as "unreachable" (LaunchError.kind), as with docker-py."""
    engine = DockerEngine(threads=4)
    assert engine.socket is not None
    engine.socket.path = str(tmp_path / "no-engine.sock")
    runtime = ContainerRuntime(ContainerLauncher(engine, instance_id=new_instance_id("engine")),
                               default_oci_runtime="runc")
    try:
        for call in (engine.start, engine.attach):
            with pytest.raises(requests.exceptions.ConnectionError):
                await call(uuid.uuid4().hex)
        result = await runtime.run(_spec(busybox, ["true"]), asyncio.Event())
        assert result.termination is Termination.PLATFORM_ERROR and result.launch_failure == "unreachable"
    finally:
        await engine.aclose()


async def _heard(loop: asyncio.AbstractEventLoop, number: int) -> bool | None:
    """Whether a socket given descriptor `number` is heard by the event loop: None when no new
    socket got that number (it was not free)."""
    opened: list[socket.socket] = []
    try:
        while len(opened) < 64:
            ours, peer = socket.socketpair()
            opened += [ours, peer]
            if number in (ours.fileno(), peer.fileno()):
                listener, talker = (ours, peer) if ours.fileno() == number else (peer, ours)
                listener.setblocking(False)
                received = asyncio.ensure_future(loop.sock_recv(listener, 1))
                await asyncio.sleep(0)  # it waits on the loop now
                talker.send(b"x")
                try:
                    return await asyncio.wait_for(received, 2.0) == b"x"
                except TimeoutError:
                    return False
        return None
    finally:
        for sock in opened:
            sock.close()


@pytest.mark.parametrize("ending", [Termination.TIMEOUT, Termination.CANCELLED])
async def test_a_socket_opened_while_a_task_is_killed_is_heard(busybox: str, ending: Termination) -> None:
    """A task killed at its timeout or on cancel has its attach socket closed before the kill. The
    event loop must have stopped watching that socket first: a closed descriptor it still watched
    left the next socket given that number unheard. Under load that was the next pre-started
    container's attach, which waited out its 60 s timeout and closed its shelf of the pool for
    30 s more (the flaky "no pre-started container" of tests/api)."""
    engine = DockerEngine(threads=4)
    runtime = ContainerRuntime(ContainerLauncher(engine, instance_id=new_instance_id("engine")))
    loop = asyncio.get_running_loop()
    numbers: list[int] = []
    heard: list[bool | None] = []
    attach, kill = engine.attach, engine.kill

    async def attach_noting_the_number(container_id: str) -> tuple[socket.socket, Any]:
        raw, attached = await attach(container_id)
        numbers.append(raw.fileno())
        return raw, attached

    async def kill_after_a_new_socket(container_id: str) -> None:
        heard.append(await _heard(loop, numbers[-1]))  # the attach socket is closed by now
        await kill(container_id)

    engine.attach = attach_noting_the_number  # type: ignore[method-assign]  # spies on the real calls
    engine.kill = kill_after_a_new_socket  # type: ignore[method-assign]
    cancelled = asyncio.Event()
    spec = _spec(busybox, ["sleep", "60"])
    if ending is Termination.TIMEOUT:
        spec = replace(spec, limits=replace(spec.limits, timeout_s=0.5))
    else:
        loop.call_later(0.5, cancelled.set)
    try:
        result = await runtime.run(spec, cancelled)
        assert result.termination is ending, result
        assert heard and heard[0] is not None, "no new socket was given the task's attach descriptor"
        assert heard[0], "a socket on the killed task's old descriptor was never heard by the event loop"
        await runtime.launcher.drain()
    finally:
        await engine.aclose()
