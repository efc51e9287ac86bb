"""What the orchestrator asks of a runtime and what it gets back.

A runtime knows Docker (and, for WASM agents, wasmtime); the orchestrator
knows only these records.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

EXECUTION_LABEL = "org.executor.execution"
INSTANCE_LABEL = "org.executor.instance"
POOL_LABEL = "org.executor.pool"  # a pre-started container; its value is the pool key's hash
# Tasks run as nobody, whatever the image says: an image cannot opt into root.
TASK_USER = "65534:65534"
# Where a task with egress finds the directory holding its socket to the egress gateway (mounted
# read-only; the one host path a task may see: docs/security.md). Tasks without egress have none.
EGRESS_MOUNT = "/run/executor/egress"
EGRESS_SOCKET = EGRESS_MOUNT + "/egress.sock"


@dataclass(frozen=True)
class TaskLimits:
    """One task's resource limits, as the runtime enforces them (the container's cgroup, and the
    wall clock from the claim)."""

    memory_mb: int
    cpus: float
    pids: int  # at least 1: 0 would mean no limit
    timeout_s: float


@dataclass(frozen=True)
class TaskSpec:
    execution_id: str
    image: str  # pinned image id (sha256:…), never a mutable tag
    command: list[str] | None
    stdin: bytes
    limits: TaskLimits
    max_output_bytes: int
    max_log_bytes: int
    tmpfs_mb: int
    oci_runtime: str | None = None
    # The agent's bounds on pre-started containers (see runtimes/pool.py).
    pool_min: int = 1
    pool_max: int = 8
    # Whose bounds those are (the agent version): identical containers are shared, settings are not.
    pool_owner: str | None = None
    # What the task may reach through its egress socket, opaque here: handed to the launcher's
    # EgressSockets at the claim (runtimes/live.py). None: no egress, no socket, no mount.
    egress: Any = None
    environment: tuple[tuple[str, str], ...] = ()  # fixed at the container's creation


class Termination(str, enum.Enum):
    EXITED = "exited"  # the process ended by itself; see exit_code
    TIMEOUT = "timeout"  # killed by the orchestrator at the wall-clock limit
    OOM = "oom"  # killed by the kernel at the memory limit
    OUTPUT_TOO_LARGE = "output_too_large"  # killed past the stdout or stderr cap
    CANCELLED = "cancelled"  # killed on request
    PLATFORM_ERROR = "platform_error"  # the engine failed us, not the task
    WASM_TRAP = "wasm_trap"  # a WASM agent trapped (unreachable, out of bounds, stack, …)
    FUEL_EXHAUSTED = "fuel_exhausted"  # a WASM agent used up its fuel
    EGRESS_LIMIT = "egress_limit"  # killed at a cap of its egress (TaskResult.egress_limit says which)


@dataclass(frozen=True)
class TaskUsage:
    """What a task consumed: a pre-started container from its claim, a cold one from its creation
    (see runtimes/metering.py)."""

    cpu_ns: int | None = None
    peak_memory_bytes: int | None = None
    method: str | None = None  # "cgroup" or "stats"; None when not measured
    oom_kills: int | None = None  # kernel kills at its memory limit (runtimes/oom.py); None: unknown here


@dataclass(frozen=True)
class TaskResult:
    termination: Termination
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    started_at: datetime | None
    finished_at: datetime | None
    wall_ms: int | None
    detail: str = ""
    pooled: bool = False  # ran in a pre-started container claimed from the pool
    usage: TaskUsage = TaskUsage()
    oci_runtime: str | None = None  # what it actually ran under: the spec's, else the engine's default
    # Why it never started, when the engine was the cause: "unreachable" (no answer at all) or
    # "engine_error" (a 5xx: e.g. shutting down). None otherwise (a refusal such as no such image).
    launch_failure: str | None = None
    # (phase, wall-clock time.time() it ended): "container" (in hand), "output" (stdout closed),
    # "exited" (the engine's wait answered), "metered". For the service's timing, when asked.
    marks: tuple[tuple[str, float], ...] = ()
    # A task with egress: what it sent through the gateway (the gateway's entries, in order), and
    # the cap that ended it, if one did (e.g. "egress_requests_exceeded"). None: no egress.
    egress: tuple[Any, ...] | None = None
    egress_limit: str | None = None
