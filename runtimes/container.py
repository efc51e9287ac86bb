"""Container agents: one fresh, hardened container per task. docker-py builds its
configuration; its lifecycle calls go over the engine's socket (runtimes/engine_socket.py).

The task's input goes to its stdin over the attach socket (attached before
start, so no output is lost), then stdin is closed; stdout and stderr come
back over the same socket, each capped while read. Nothing is ever read
from the container's filesystem and nothing from the host is mounted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import docker.errors
import docker.types
import requests.exceptions

from executor.observability.metrics import METRICS
from runtimes.base import (
    EXECUTION_LABEL,
    INSTANCE_LABEL,
    POOL_LABEL,
    TASK_USER,
    TaskResult,
    TaskSpec,
    TaskUsage,
    Termination,
)
from runtimes.engine import DockerEngine
from runtimes.metering import Meter, Metering
from runtimes.streams import CappedDemuxer

if TYPE_CHECKING:
    from runtimes.pool import ContainerPool

log = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
_KILL_GRACE_S = 10.0


def hardened_host_config(engine: DockerEngine, spec: TaskSpec, *, cgroup_parent: str | None = None,
                         memory_headroom: int = 0) -> dict[str, Any]:
    """The whole hardening baseline of DESIGN.md; tenants cannot opt out of any of it.
    `cgroup_parent` is the meter's (runtimes/metering.py): it places the cgroup, and when the
    parent enforces the task's memory limit itself (runtimes/oom.py), the engine's limit is a
    backstop `memory_headroom` bytes above it."""
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
    if cgroup_parent:
        options["cgroup_parent"] = cgroup_parent
    return engine.api.create_host_config(**options)


@dataclass
class LiveContainer:
    """A started container whose stdin, stdout and stderr we hold over the attach socket."""

    id: str
    attached: Any  # docker-py's SocketIO when it made the attach (it shares `raw`'s descriptor), or None
    raw: socket.socket
    pooled: bool = False
    cgroup_parent: str | None = None  # the meter's per-container parent; released after removal
    idle_cpu_ns: int | None = None  # the pool's last CPU sample of it while unclaimed (stats API)

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
        _hang_up(self.raw)
        if self.attached is not None:
            self.attached.close()


class LaunchError(Exception):
    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.kind = _engine_trouble(cause)


def _engine_trouble(exc: BaseException) -> str | None:
    """"unreachable", "engine_error" (a 5xx), or None for a refusal of this task."""
    if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError)):
        return "unreachable"
    if isinstance(exc, docker.errors.APIError) and exc.is_server_error():
        return "engine_error"
    return None


class ContainerRuntime:
    def __init__(self, engine: DockerEngine, *, instance_id: str, meter: Meter | None = None,
                 default_oci_runtime: str | None = None) -> None:
        self.engine = engine
        self.instance_id = instance_id
        self.meter = meter
        # What a spec without its own OCI runtime runs under (the engine's DefaultRuntime).
        self.default_oci_runtime = default_oci_runtime
        self.pool: ContainerPool | None = None
        self.running = 0  # tasks between claim and result
        self._removals: set[asyncio.Task[None]] = set()
        # Background removals compete with running tasks for the engine: a few at a time.
        self._removal_slots = asyncio.Semaphore(2)

    async def start(self) -> None:
        """Read the engine's default OCI runtime, once (a failure is retried at the next task)."""
        if self.default_oci_runtime is None:
            try:
                info = await self.engine.call_retrying(self.engine.api.info)
                self.default_oci_runtime = info.get("DefaultRuntime")
            except docker.errors.DockerException as exc:
                log.warning("could not read the engine's default OCI runtime: %s", exc)

    async def launch(self, spec: TaskSpec, labels: dict[str, str]) -> LiveContainer:
        """Create, attach (before start, so no output is lost) and start a hardened container."""
        parent = self.meter.cgroup_parent(self.instance_id) if self.meter else None
        headroom = self.meter.enforce_memory(parent, spec.limits.memory_mb * 2**20) if self.meter and parent else 0
        try:
            container_id = await self.engine.create_container(
                image=spec.image,
                command=spec.command,
                user=TASK_USER,
                stdin_open=True,
                network_disabled=True,  # with network_mode none: only `lo`, and a faster start
                labels={INSTANCE_LABEL: self.instance_id, **labels},
                host_config=hardened_host_config(self.engine, spec, cgroup_parent=parent, memory_headroom=headroom),
            )
        except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
            self._release(parent)  # the engine refused or is unreachable: nothing of the task ran
            raise LaunchError(f"could not create the container: {exc}", exc) from exc
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
        return live

    async def run(self, spec: TaskSpec, cancelled: asyncio.Event) -> TaskResult:
        """Run one task to its end in a container of its own; never raises for anything the task does."""
        self.running += 1
        try:
            return await self._run(spec, cancelled)
        finally:
            self.running -= 1

    async def _run(self, spec: TaskSpec, cancelled: asyncio.Event) -> TaskResult:
        if self.default_oci_runtime is None:
            await self.start()
        oci_runtime = spec.oci_runtime or self.default_oci_runtime
        asked = time.monotonic()
        live = await self.pool.claim(spec) if self.pool else None
        if live is None:
            asked = time.monotonic()  # a miss: the cold start is timed from the creation
            try:
                live = await self.launch(spec, {EXECUTION_LABEL: spec.execution_id})
            except LaunchError as exc:
                # It never ran: no runtime, no usage.
                return dataclasses.replace(_platform_error(str(exc)), launch_failure=exc.kind)
        # Before the input is written: a pooled task is metered from here, its claim; a cold
        # one from its container's creation (see runtimes/metering.py).
        metering = await self._begin_metering(live)
        # Until the task's wall clock starts (its input is written next).
        METRICS.container_started(time.monotonic() - asked, pooled=live.pooled)
        try:
            result = await self._drive(live, spec, cancelled, metering)
        except Exception as exc:  # the engine failed mid-run: never leave the container behind
            log.exception("task %s: engine failure", spec.execution_id)
            await self._kill(live.id)
            # It had started: whatever of it ran is cut off (a platform error, not to be re-run as new).
            result = _platform_error(f"engine failure during the run: {exc}", pooled=live.pooled,
                                     started_at=datetime.now(UTC))
        finally:
            live.close()
            if metering is not None:
                metering.abandon()
        result = dataclasses.replace(result, oci_runtime=oci_runtime)
        if result.termination in (Termination.EXITED, Termination.OOM):
            self.remove_later(live.id, live.cgroup_parent)  # off the hot path: the result is already complete
        else:
            await self.remove(live.id, live.cgroup_parent)
        return result

    async def _begin_metering(self, live: LiveContainer) -> Metering | None:
        if self.meter is None:
            return None
        try:
            return await self.meter.begin(self.engine, live)
        except Exception:  # metering never fails a task
            log.exception("metering: could not begin for %s", live.id[:12])
            return None

    async def _finish_metering(self, metering: Metering | None, container_id: str) -> TaskUsage:
        """After the container's exit is known, before its removal."""
        if metering is None:
            return TaskUsage()
        try:
            return await metering.finish()
        except Exception:
            log.exception("metering: could not finish for %s", container_id[:12])
            return TaskUsage()

    async def _drive(self, live: LiveContainer, spec: TaskSpec, cancelled: asyncio.Event,
                     metering: Metering | None = None) -> TaskResult:
        """Feed the input, collect the output under the caps and the wall clock, which starts now."""
        loop = asyncio.get_running_loop()
        demux = CappedDemuxer(spec.max_output_bytes, spec.max_log_bytes)
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        deadline = t0 + spec.limits.timeout_s
        writer = asyncio.create_task(_write_stdin(loop, live.raw, spec.stdin))
        reader = asyncio.create_task(_read_until(loop, live.raw, demux))
        termination = await _supervise(reader, cancelled, deadline)
        if termination is not None:
            # Stop reading for good before the kill: the engine must never be left
            # blocked writing to a socket nobody drains (it would hang the container).
            _hang_up(live.raw)
            await self._kill(live.id)
        writer.cancel()
        reader.cancel()
        await asyncio.gather(writer, reader, return_exceptions=True)
        if termination is None:
            # Output closed: the process is ending, but the wall clock still holds.
            exit_code = await self._wait(live.id, max(deadline - time.monotonic(), 0.0))
            if exit_code is None:
                termination = Termination.TIMEOUT
                await self._kill(live.id)
        if termination is not None:
            exit_code = await self._wait(live.id, _KILL_GRACE_S)
        wall_ms = int((time.monotonic() - t0) * 1000)
        finished_at = datetime.now(UTC)
        usage = await self._finish_metering(metering, live.id)
        detail = ""
        # Only a task that ended by itself: one we killed (timeout, cancel, caps) keeps that reason.
        if termination is None and exit_code != 0 and await self._oom_killed(live.id, usage):
            termination, detail = Termination.OOM, f"killed at the memory limit of {spec.limits.memory_mb} MB"
        if termination is Termination.OUTPUT_TOO_LARGE:
            cap = spec.max_output_bytes if demux.overflowed == "stdout" else spec.max_log_bytes
            detail = f"{demux.overflowed} went past its cap of {cap} bytes"
        elif termination is Termination.TIMEOUT:
            detail = f"wall-clock limit of {spec.limits.timeout_s:g} s reached"
        return TaskResult(
            termination=termination or Termination.EXITED,
            exit_code=exit_code,
            stdout=demux.stdout,
            stderr=demux.stderr,
            started_at=started_at,
            finished_at=finished_at,
            wall_ms=wall_ms,
            detail=detail,
            pooled=live.pooled,
            usage=usage,
        )

    async def _oom_killed(self, container_id: str, usage: TaskUsage) -> bool:
        """Whether the kernel killed any process of the container at its memory limit, whatever
        exit code the main process reported. The task's cgroup counter first: it cannot race
        (runtimes/oom.py). The engine's OOMKilled flag may lag or never come, so it only ever adds
        a yes (an OOM in the container's own cgroup; the only source without a cgroup meter)."""
        if usage.oom_kills:
            return True
        state = (await self.engine.inspect_container(container_id))["State"]
        return bool(state.get("OOMKilled"))

    async def _wait(self, container_id: str, timeout_s: float) -> int | None:
        """The exit code, or None when the container did not exit within timeout_s."""
        try:
            result = await asyncio.wait_for(self.engine.wait(container_id), timeout_s)
        except TimeoutError:
            return None
        return result.get("StatusCode")

    async def _kill(self, container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError, requests.exceptions.ConnectionError):
            # 409 "is not running" is fine: it is already down; an engine that is away killed it.
            await self.engine.kill(container_id)

    async def remove(self, container_id: str, cgroup_parent: str | None = None) -> None:
        """Remove a container, then its meter's parent cgroup (runc already removed the leaf)."""
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
        self._release(cgroup_parent)

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

    def _release(self, cgroup_parent: str | None) -> None:
        if self.meter is not None and cgroup_parent is not None:
            try:
                self.meter.release(cgroup_parent)
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


async def _write_stdin(loop: asyncio.AbstractEventLoop, raw: socket.socket, data: bytes) -> None:
    # A task that never reads its stdin or exits early is its own business, not an error.
    with contextlib.suppress(OSError):
        if data:
            await loop.sock_sendall(raw, data)
        raw.shutdown(socket.SHUT_WR)


async def _read_until(loop: asyncio.AbstractEventLoop, raw: socket.socket, demux: CappedDemuxer) -> bool:
    """Read frames until EOF (True) or until a stream passes its cap (False)."""
    while True:
        chunk = await loop.sock_recv(raw, _READ_CHUNK)
        if not chunk:
            return True
        demux.feed(chunk)
        if demux.overflowed:
            return False


async def _supervise(reader: asyncio.Task[bool], cancelled: asyncio.Event, deadline: float) -> Termination | None:
    """None when the task closed its output by itself; otherwise why we must kill it."""
    cancel_wait = asyncio.create_task(cancelled.wait())
    try:
        done, _ = await asyncio.wait(
            {reader, cancel_wait}, timeout=max(deadline - time.monotonic(), 0.0), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        cancel_wait.cancel()
    if reader in done:
        if reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]
        return None if reader.result() else Termination.OUTPUT_TOO_LARGE
    return Termination.CANCELLED if cancelled.is_set() else Termination.TIMEOUT


def _hang_up(raw: socket.socket) -> None:
    """End the attach connection itself. socket.close() alone would not: docker-py's
    response still holds a file object on the same descriptor."""
    with contextlib.suppress(OSError):
        raw.shutdown(socket.SHUT_RDWR)
    raw.close()


def _platform_error(detail: str, *, pooled: bool = False, started_at: datetime | None = None) -> TaskResult:
    """started_at None: the task never started (nothing of it ran)."""
    return TaskResult(Termination.PLATFORM_ERROR, None, b"", b"", started_at, None, None, detail, pooled)
