"""Container agents: one fresh, hardened container per task, claimed from the pool when it has
one ready (runtimes/pool.py), else launched cold (runtimes/launcher.py). docker-py builds its
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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import docker.errors
import requests.exceptions

from runtimes.base import EXECUTION_LABEL, TaskResult, TaskSpec, TaskUsage, Termination
from runtimes.launcher import ContainerLauncher
from runtimes.launcher import hardened_host_config as hardened_host_config  # where bench/ and others find it
from runtimes.live import Claimer, LaunchError, LiveContainer, RunningTasks, hang_up
from runtimes.metering import Metering
from runtimes.streams import CappedDemuxer

log = logging.getLogger(__name__)

_READ_CHUNK = 64 * 1024
_KILL_GRACE_S = 10.0


class StartObserver(Protocol):
    """Told how long each task waited for its container, up to the moment its input is written
    (the service's metrics: executor/observability/metrics.py)."""

    def __call__(self, seconds: float, *, pooled: bool) -> None: ...


def _ignore_start(seconds: float, *, pooled: bool) -> None:
    pass


class ContainerRuntime:
    """Runs tasks, each in a container of its own: from a claimer's pre-started ones (a pool),
    else launched cold; `running` counts the tasks between their claim and their result."""

    def __init__(self, launcher: ContainerLauncher, *, claimer: Claimer | None = None,
                 running: RunningTasks | None = None, default_oci_runtime: str | None = None,
                 on_container_started: StartObserver = _ignore_start) -> None:
        self.launcher = launcher
        self.engine = launcher.engine
        self.meter = launcher.meter
        self.claimer = claimer
        self.running = running if running is not None else RunningTasks()
        # What a spec without its own OCI runtime runs under (the engine's DefaultRuntime).
        self.default_oci_runtime = default_oci_runtime
        self.on_container_started = on_container_started

    async def start(self) -> None:
        """Read the engine's default OCI runtime, once (a failure is retried at the next task)."""
        if self.default_oci_runtime is None:
            try:
                info = await self.engine.call_retrying(self.engine.api.info)
                self.default_oci_runtime = info.get("DefaultRuntime")
            except docker.errors.DockerException as exc:
                log.warning("could not read the engine's default OCI runtime: %s", exc)

    async def run(self, spec: TaskSpec, cancelled: asyncio.Event,
                  on_stderr: Callable[[bytes], None] | None = None) -> TaskResult:
        """Run one task to its end in a container of its own; never raises for anything the task does.
        `on_stderr`, if given, is called with each piece of stderr as it is read (within the log's
        cap; it must not block: it runs on the reading loop); an exception of it is logged, once."""
        self.running.count += 1
        try:
            return await self._run(spec, cancelled, on_stderr)
        finally:
            self.running.count -= 1

    async def _run(self, spec: TaskSpec, cancelled: asyncio.Event,
                   on_stderr: Callable[[bytes], None] | None = None) -> TaskResult:
        if self.default_oci_runtime is None:
            await self.start()
        oci_runtime = spec.oci_runtime or self.default_oci_runtime
        asked = time.monotonic()
        live = await self.claimer.claim(spec) if self.claimer else None
        if live is None:
            asked = time.monotonic()  # a miss: the cold start is timed from the creation
            try:
                live = await self.launcher.launch(spec, {EXECUTION_LABEL: spec.execution_id})
            except LaunchError as exc:
                # It never ran: no runtime, no usage.
                return dataclasses.replace(_platform_error(str(exc)), launch_failure=exc.kind)
        egress_limit = self._bind_egress(live, spec)
        if egress_limit is None:  # it should have had a socket and has none: nothing of it ran
            live.close()
            await self.launcher.remove(live.id, live.cgroup_parent)
            return _platform_error("the container has no egress socket", pooled=live.pooled)
        # Before the input is written: a pooled task is metered from here, its claim; a cold
        # one from its container's creation (see runtimes/metering.py).
        metering = await self._begin_metering(live)
        # Until the task's wall clock starts (its input is written next).
        self.on_container_started(time.monotonic() - asked, pooled=live.pooled)
        in_hand = time.time()
        stop, watchers = _either(cancelled, egress_limit.hit) if spec.egress is not None else (cancelled, [])
        try:
            result = await self._drive(live, spec, stop, metering, on_stderr)
            result = dataclasses.replace(result, marks=(("container", in_hand), *result.marks))
            if result.termination is Termination.CANCELLED and egress_limit.kind and not cancelled.is_set():
                result = dataclasses.replace(result, termination=Termination.EGRESS_LIMIT,
                                             egress_limit=egress_limit.kind,
                                             detail=f"{egress_limit.kind}: past a cap of its egress")
        except Exception as exc:  # the engine failed mid-run: never leave the container behind
            log.exception("task %s: engine failure", spec.execution_id)
            await self._kill(live.id)
            # It had started: whatever of it ran is cut off (a platform error, not to be re-run as new).
            result = _platform_error(f"engine failure during the run: {exc}", pooled=live.pooled,
                                     started_at=datetime.now(UTC))
        finally:
            for watcher in watchers:
                watcher.cancel()
            live.close()
            if metering is not None:
                metering.abandon()
        result = dataclasses.replace(result, oci_runtime=oci_runtime)
        if live.egress is not None and self.launcher.egress is not None:
            # What it sent, before the container goes (its socket is closed with it).
            sent = await self.launcher.egress.release(live.egress)
            result = dataclasses.replace(result, egress=tuple(sent))
        if result.termination in (Termination.EXITED, Termination.OOM):
            # Off the hot path: the result is already complete.
            self.launcher.remove_later(live.id, live.cgroup_parent)
        else:
            await self.launcher.remove(live.id, live.cgroup_parent)
        return result

    def _bind_egress(self, live: LiveContainer, spec: TaskSpec) -> _EgressLimit | None:
        """Give the container's egress socket to this task (at its claim: a pre-started container
        got its socket at creation, bound to no one). None when it should have one and has none."""
        limit = _EgressLimit()
        if spec.egress is None:
            return limit
        if live.egress is None or self.launcher.egress is None:
            return None
        self.launcher.egress.bind(live.egress, spec.execution_id, spec.egress, limit.reached)
        return limit

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
                     metering: Metering | None = None, on_stderr: Callable[[bytes], None] | None = None,
                     ) -> TaskResult:
        """Feed the input, collect the output under the caps and the wall clock, which starts now."""
        loop = asyncio.get_running_loop()
        demux = CappedDemuxer(spec.max_output_bytes, spec.max_log_bytes)
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        deadline = t0 + spec.limits.timeout_s
        writer = asyncio.create_task(_write_stdin(loop, live.raw, spec.stdin))
        reader = asyncio.create_task(_read_until(loop, live.raw, demux, on_stderr))
        # Asked now, answered at the exit: once the output closes, the engine's answer is all that
        # is left to wait for (not a request sent only then).
        exit_waiter = asyncio.create_task(self.engine.wait(live.id))
        try:
            try:
                termination = await _supervise(reader, cancelled, deadline)
            finally:
                # Both off the event loop's watch before the socket is closed. A descriptor closed
                # while the loop still watches it stays in the loop's books, and the next socket
                # given its number (most often the next container's attach) is never heard from:
                # that attach waited out its 60 s timeout, and its shelf of the pool closed.
                writer.cancel()
                reader.cancel()
                await asyncio.gather(writer, reader, return_exceptions=True)
            output_closed = time.time()
            if termination is not None:
                # Stop reading for good before the kill: the engine must never be left
                # blocked writing to a socket nobody drains (it would hang the container).
                hang_up(live.raw)
                await self._kill(live.id)
            if termination is None:
                # Output closed: the process is ending, but the wall clock still holds.
                exit_code = await _exit_code(exit_waiter, max(deadline - time.monotonic(), 0.0))
                if exit_code is None:
                    termination = Termination.TIMEOUT
                    await self._kill(live.id)
            if termination is not None:
                exit_code = await _exit_code(exit_waiter, _KILL_GRACE_S)
            wall_ms = int((time.monotonic() - t0) * 1000)
            finished_at = datetime.now(UTC)
            exited = time.time()
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
                marks=(("output", output_closed), ("exited", exited), ("metered", time.time())),
            )
        finally:
            exit_waiter.cancel()
            await asyncio.gather(exit_waiter, return_exceptions=True)

    async def _oom_killed(self, container_id: str, usage: TaskUsage) -> bool:
        """Whether the kernel killed any process of the container at its memory limit, whatever
        exit code the main process reported. The task's cgroup counter first: it cannot race
        (runtimes/oom.py). The engine's OOMKilled flag may lag or never come, so it only ever adds
        a yes (an OOM in the container's own cgroup; the only source without a cgroup meter)."""
        if usage.oom_kills:
            return True
        state = (await self.engine.inspect_container(container_id))["State"]
        return bool(state.get("OOMKilled"))



    async def _kill(self, container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError, requests.exceptions.ConnectionError):
            # 409 "is not running" is fine: it is already down; an engine that is away killed it.
            await self.engine.kill(container_id)


async def _exit_code(exit_waiter: asyncio.Task[dict[str, Any]], timeout_s: float) -> int | None:
    """The exit code the engine answered, or None when the container did not exit within timeout_s."""
    try:
        result = await asyncio.wait_for(asyncio.shield(exit_waiter), timeout_s)
    except TimeoutError:
        return None
    code: int | None = result.get("StatusCode")
    return code


async def _write_stdin(loop: asyncio.AbstractEventLoop, raw: socket.socket, data: bytes) -> None:
    # A task that never reads its stdin or exits early is its own business, not an error.
    with contextlib.suppress(OSError):
        if data:
            await loop.sock_sendall(raw, data)
        raw.shutdown(socket.SHUT_WR)


async def _read_until(loop: asyncio.AbstractEventLoop, raw: socket.socket, demux: CappedDemuxer,
                      on_stderr: Callable[[bytes], None] | None = None) -> bool:
    """Read frames until EOF (True) or until a stream passes its cap (False); `on_stderr` gets
    the stderr bytes each read kept (never any past the cap)."""
    while True:
        chunk = await loop.sock_recv(raw, _READ_CHUNK)
        if not chunk:
            return True
        kept = demux.stderr_size
        demux.feed(chunk)
        if on_stderr is not None and demux.stderr_size > kept:
            try:
                on_stderr(demux.stderr_since(kept))
            except Exception:  # a follower's trouble never touches the task: no more of its stderr goes there
                log.exception("the stderr callback failed; the task's stderr is no longer relayed")
                on_stderr = None
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
        error = reader.exception()
        if error is not None:
            raise error
        return None if reader.result() else Termination.OUTPUT_TOO_LARGE
    return Termination.CANCELLED if cancelled.is_set() else Termination.TIMEOUT


class _EgressLimit:
    """The first cap of its egress a task passed, as the gateway tells it; `hit` ends the task."""

    def __init__(self) -> None:
        self.kind: str | None = None
        self.hit = asyncio.Event()

    def reached(self, kind: str) -> None:
        if self.kind is None:
            self.kind = kind
            self.hit.set()


def _either(*events: asyncio.Event) -> tuple[asyncio.Event, list[asyncio.Task[None]]]:
    """An event set as soon as any of `events` is, and the tasks watching them (to cancel)."""
    either = asyncio.Event()

    async def relay(event: asyncio.Event) -> None:
        await event.wait()
        either.set()

    return either, [asyncio.create_task(relay(event)) for event in events]


def _platform_error(detail: str, *, pooled: bool = False, started_at: datetime | None = None) -> TaskResult:
    """started_at None: the task never started (nothing of it ran)."""
    return TaskResult(Termination.PLATFORM_ERROR, None, b"", b"", started_at, None, None, detail, pooled)
