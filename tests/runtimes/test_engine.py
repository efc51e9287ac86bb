"""The service's engine client against the real engine: one keep-alive pool for the socket."""

from __future__ import annotations

import uuid

import docker
import docker.errors
import pytest
from docker.transport.unixconn import UnixHTTPConnection

from runtimes.engine import DockerEngine


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
        assert engine.api is client.api and client.api.trust_env is True
    finally:
        engine.close()
