"""A started container as the launcher, the pool and the runtime pass it between them, and what
they share about it: why a launch failed, and how many tasks run now.

Nothing here imports another module of runtimes/ but base.py: launcher.py, pool.py, metering.py
and container.py all build on it, so runtimes/ imports only point one way.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import docker.errors
import requests.exceptions

from runtimes.base import TaskSpec


@dataclass
class LiveContainer:
    """A started container whose stdin, stdout and stderr we hold over the attach socket."""

    id: str
    attached: Any  # docker-py's SocketIO when it made the attach (it shares `raw`'s descriptor), or None
    raw: socket.socket
    pooled: bool = False
    cgroup_parent: str | None = None  # the meter's per-container parent; released after removal
    idle_cpu_ns: int | None = None  # the pool's last CPU sample of it while unclaimed (stats API)
    egress: Any = None  # its socket to the egress gateway (an EgressSockets lease), if it has one

    def peek(self) -> bool | None:
        """Without blocking: None when nothing was written yet, True when output waits,
        False when the stream ended (the container is gone or done)."""
        try:
            return bool(self.raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return None
        except OSError:
            return False

    def close(self) -> None:
        hang_up(self.raw)
        if self.attached is not None:
            self.attached.close()


def hang_up(raw: socket.socket) -> None:
    """End the attach connection itself. socket.close() alone would not: docker-py's
    response still holds a file object on the same descriptor. The event loop must no longer
    watch the socket (see ContainerRuntime._drive): a closed descriptor the loop still watches
    leaves the next socket given the same number unheard."""
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    raw.close()


class LaunchError(Exception):
    """A container could not be created or started; `kind` says whether the engine was the cause."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.kind = engine_trouble(cause)


def engine_trouble(exc: BaseException) -> str | None:
    """"unreachable", "engine_error" (a 5xx), or None for a refusal of this task."""
    if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)):
        return "unreachable"
    if isinstance(exc, docker.errors.APIError) and exc.is_server_error():
        return "engine_error"
    return None


class EgressLease(Protocol):
    @property
    def host_dir(self) -> Path:
        """The directory, holding only the socket, mounted read-only at EGRESS_MOUNT."""
        ...


class EgressSockets(Protocol):
    """The egress gateway as the runtime sees it (the service's: executor/egress). A container
    with egress gets a socket of its own at its creation; the socket is bound to a task when the
    task claims the container, and released when the task ends (or the container is discarded)."""

    async def open_socket(self) -> EgressLease: ...

    def bind(self, lease: Any, execution_id: str, grant: Any, on_limit: Callable[[str], None]) -> None:
        """From now on what arrives on the socket is this execution's, under `grant` (TaskSpec.egress);
        `on_limit(error_type)` is called once when the task passes one of its caps."""
        ...

    async def release(self, lease: Any) -> list[Any]:
        """Close the socket (idempotent); what the bound execution sent, in order."""
        ...


class Claimer(Protocol):
    """What the runtime asks of a pool of pre-started containers (runtimes/pool.py)."""

    async def claim(self, spec: TaskSpec) -> LiveContainer | None:
        """A pre-started container for this task, or None: then it starts cold."""
        ...


@dataclass
class RunningTasks:
    """Tasks between their claim and their result: the runtime counts them, the pool reads them
    (a worker whose slots are all busy pre-starts nothing, and a lone task starts cold)."""

    count: int = 0
