"""This instance's containers on the engine: each created with the whole hardening baseline,
attached and started (for a task at once, or ahead of one by the pool), and removed after its
one use, or found by label and removed when a crash left it behind.

The runtime (runtimes/container.py) and the pool (runtimes/pool.py) are both given a launcher;
neither holds the other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import docker.errors
import docker.types
import requests.exceptions

from runtimes.base import EGRESS_MOUNT, EXECUTION_LABEL, INSTANCE_LABEL, POOL_LABEL, TASK_USER, TaskSpec
from runtimes.engine import DockerEngine
from runtimes.live import EgressLease, EgressSockets, LaunchError, LiveContainer
from runtimes.metering import Meter

log = logging.getLogger(__name__)


def hardened_host_config(engine: DockerEngine, spec: TaskSpec, *, cgroup_parent: str | None = None,
                         memory_headroom: int = 0, egress: EgressLease | None = None) -> dict[str, Any]:
    """The whole hardening baseline (docs/security.md, "Every task container"); tenants cannot opt out of any of it.
    `cgroup_parent` is the meter's (runtimes/metering.py): it places the cgroup, and when the
    parent enforces the task's memory limit itself (runtimes/oom.py), the engine's limit is a
    backstop `memory_headroom` bytes above it. `egress`: the task's own socket directory to the
    egress gateway, mounted read-only (the one host path a task may see; still no network)."""
    memory = spec.limits.memory_mb * 2**20 + memory_headroom
    tmpfs_bytes = spec.tmpfs_mb * 1024 * 1024
    options: dict[str, Any] = dict(
        network_mode="none",
        mem_limit=memory,
        memswap_limit=memory,  # equal to the memory limit: no swap
        nano_cpus=int(spec.limits.cpus * 1e9),
        pids_limit=spec.limits.pids,  # never 0: docker-py would drop it
        read_only=True,
        # The capped /tmp is the one writable mount. IPC mode "none": a private IPC namespace
        # and no /dev/shm (runc and runsc); the engine still mounts a writable mqueue at
        # /dev/mqueue (runc), so an empty read-only tmpfs takes its place (a mount of ours at
        # the same path replaces the engine's default one).
        ipc_mode="none",
        tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={spec.tmpfs_mb}m",
               "/dev/mqueue": "ro,noexec,nosuid,nodev,size=4k,mode=0555"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],  # and the engine's default seccomp profile
        privileged=False,
        ulimits=[
            docker.types.Ulimit(name="nofile", soft=256, hard=256),
            docker.types.Ulimit(name="fsize", soft=tmpfs_bytes, hard=tmpfs_bytes),
            docker.types.Ulimit(name="core", soft=0, hard=0),
        ],
        # Output travels over the attach socket with our own caps; the engine
        # keeps no copy on disk that an output flood could fill.
        log_config=docker.types.LogConfig(type="none"),
    )
    if spec.oci_runtime:
        options["runtime"] = spec.oci_runtime
    if egress is not None:
        options["mounts"] = [docker.types.Mount(
            EGRESS_MOUNT, str(egress.host_dir), type="bind", read_only=True,
            propagation="rprivate", consistency="default")]
    if cgroup_parent:
        options["cgroup_parent"] = cgroup_parent
    result: dict[str, Any] = engine.api.create_host_config(**options)
    return result


class ContainerLauncher:
    """Launches and removes the containers of one service instance (INSTANCE_LABEL), each in a
    cgroup parent of the meter's when there is a meter."""

    def __init__(self, engine: DockerEngine, *, instance_id: str, meter: Meter | None = None,
                 egress: EgressSockets | None = None) -> None:
        self.engine = engine
        self.instance_id = instance_id
        self.meter = meter
        self.egress = egress  # the gateway's sockets; None: an agent with egress cannot run here
        self._leases: dict[str, Any] = {}  # container id → its egress socket, released at its removal
        self._removals: set[asyncio.Task[None]] = set()
        # Background removals compete with running tasks for the engine: a few at a time.
        self._removal_slots = asyncio.Semaphore(2)

    async def launch(self, spec: TaskSpec, labels: dict[str, str]) -> LiveContainer:
        """Create, attach (before start, so no output is lost) and start a hardened container."""
        lease = await self._open_egress(spec)
        parent = self.meter.cgroup_parent(self.instance_id) if self.meter else None
        headroom = 0
        if self.meter and parent:
            # mkdir and writes under /sys/fs/cgroup: off the event loop (tasks are running on it).
            headroom = await asyncio.to_thread(self.meter.enforce_memory, parent, spec.limits.memory_mb * 2**20)
        try:
            container_id = await self.engine.create_container(
                image=spec.image,
                command=spec.command,
                user=TASK_USER,
                stdin_open=True,
                network_disabled=True,  # with network_mode none: only `lo`, and a faster start
                labels={INSTANCE_LABEL: self.instance_id, **labels},
                environment=dict(spec.environment) or None,
                host_config=hardened_host_config(self.engine, spec, cgroup_parent=parent, memory_headroom=headroom,
                                                 egress=lease),
            )
        except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
            await self._release(parent)  # the engine refused or is unreachable: nothing of the task ran
            await self._close_egress(lease)
            raise LaunchError(f"could not create the container: {exc}", exc) from exc
        if lease is not None:
            self._leases[container_id] = lease
        try:
            raw, attached = await self.engine.attach(container_id)
            raw.setblocking(False)
            live = LiveContainer(container_id, attached, raw, cgroup_parent=parent)
            try:
                await self.engine.start(container_id)
            except BaseException:
                live.close()
                raise
        except Exception as exc:
            await self.remove(container_id, parent)
            raise LaunchError(f"could not start the container: {exc}", exc) from exc
        live.egress = lease
        return live

    async def _open_egress(self, spec: TaskSpec) -> EgressLease | None:
        if spec.egress is None:
            return None
        if self.egress is None:
            raise LaunchError("this worker has no egress gateway", RuntimeError("no egress gateway"))
        try:
            return await self.egress.open_socket()
        except OSError as exc:
            raise LaunchError(f"could not open the task's egress socket: {exc}", exc) from exc

    async def _close_egress(self, lease: EgressLease | None) -> None:
        if lease is not None and self.egress is not None:
            try:
                await self.egress.release(lease)
            except Exception:  # a leftover socket directory is swept at the gateway's next start
                log.exception("egress: could not release a socket")
    async def idle_cpu_ns(self, live: LiveContainer) -> int | None:
        """An unclaimed container's CPU time so far (for the pool), as the meter reads it."""
        return await (self.meter or Meter()).idle_cpu_ns(self.engine, live)

    async def remove(self, container_id: str, cgroup_parent: str | None = None) -> None:
        """Remove a container, then its meter's parent cgroup (runc already removed the leaf) and its
        egress socket, if it had one."""
        await self._close_egress(self._leases.pop(container_id, None))
        try:
            await self.engine.remove_container(container_id)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                log.error("could not remove container %s: %s", container_id[:12], exc)
        except (requests.exceptions.ConnectionError, OSError) as exc:
            # The engine is away: the worker's orphan sweep removes it once the engine is back.
            log.warning("could not remove container %s now: %s", container_id[:12], exc)
        await self._release(cgroup_parent)

    def remove_later(self, container_id: str, cgroup_parent: str | None = None) -> None:
        async def remove() -> None:
            async with self._removal_slots:
                await self.remove(container_id, cgroup_parent)

        task = asyncio.create_task(remove())
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def drain(self) -> int:
        """Wait for the background removals (at shutdown); returns how many leftover
        cgroup dirs the sweep found (each removal released its own)."""
        if self._removals:
            await asyncio.gather(*list(self._removals), return_exceptions=True)
        return self.sweep()

    async def _release(self, cgroup_parent: str | None) -> None:
        if self.meter is not None and cgroup_parent is not None:
            try:
                # An rmdir per hierarchy (a memory cgroup's is slow): off the event loop, which
                # is by now running the next task (measured: ~0.7 ms a removal on it).
                await asyncio.to_thread(self.meter.release, cgroup_parent)
            except Exception:  # a leftover directory is for the next sweep, never a failure
                log.exception("metering: could not release %s", cgroup_parent)

    def sweep(self) -> int:
        """Empty cgroup dirs of this instance (a crash, a busy rmdir): only when none of its
        containers is starting (at a worker's start, after the orphans went, and at shutdown)."""
        if self.meter is None:
            return 0
        try:
            return self.meter.sweep(self.instance_id)
        except Exception:
            log.exception("metering: sweep failed")
            return 0

    async def remove_orphans(self, live_execution_ids: set[str] | Callable[[], Awaitable[set[str]]], *,
                             keep_pooled: bool = False) -> list[str]:
        """Remove this instance's containers whose execution is not live (pooled ones too,
        unless kept: they belong to no execution); returns their execution ids. Given a
        callable, the live set is read after the containers are listed, so that a task
        claimed in between is never taken for an orphan."""
        containers = await self.engine.call(
            self.engine.api.containers, all=True, filters={"label": f"{INSTANCE_LABEL}={self.instance_id}"}
        )
        live = live_execution_ids if isinstance(live_execution_ids, set) else await live_execution_ids()
        removed = []
        for container in containers:
            if keep_pooled and POOL_LABEL in container["Labels"]:
                continue
            execution_id = container["Labels"].get(EXECUTION_LABEL, "")
            if execution_id not in live:
                await self.remove(container["Id"])
                removed.append(execution_id)
        if not keep_pooled:  # at start: no task of this instance runs yet, its cgroup dirs are leftovers
            self.sweep()
        return removed
