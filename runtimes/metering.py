"""Each task's own CPU time and peak memory, from the engine's cgroup accounting.

runc deletes a container's cgroup at its exit, but one created with `cgroup_parent=
/executor/<instance>/<slot>` (a slot per container) has its cgroup under that parent, which
runc leaves with the hierarchical figures: read after the exit, they are the whole task,
tail included (`CgroupMeter`: cgroup v1 and v2, cgroupfs driver, runc and runsc). The
systemd driver wants a `*.slice` there: `StatsMeter` samples the stats API instead.
A pooled container is metered from its claim: what it used in the pool is nobody's. A
cold one from its creation: its process starts inside the engine's start call, so a
baseline read after that call loses the task's first moments (measured: up to 0.2 s of a
busy loop on a loaded host); the price is that it pays its own runc init (~40 ms CPU).
Cgroup files are pseudo-files, fine to read on the event loop; nothing is ever read
through a path inside the container's filesystem.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import docker.errors

from runtimes.base import TaskUsage
from runtimes.oom import OomWatch

if TYPE_CHECKING:
    from runtimes.engine import DockerEngine
    from runtimes.live import LiveContainer

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
_TOP = "executor"


def cgroup_name(instance_id: str) -> str:
    """The instance id as a valid cgroup name: no '/', '.' (controller files all hold one, and
    '..'), short; a changed id gets a hash of the original, so instances never share one."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", instance_id)[:64]
    if clean != instance_id or not clean:
        clean = f"{clean}-{hashlib.sha256(instance_id.encode()).hexdigest()[:12]}"
    return clean


class Metering(Protocol):
    """One task's measurement, from its claim to its container's exit."""

    async def finish(self) -> TaskUsage: ...
    def abandon(self) -> None: ...


class Meter:
    """What the container runtime asks of a meter: a cgroup parent for a new container (None:
    the engine's default), a Metering at the claim, release after the container's removal,
    and a sweep of an instance's leftovers when none of its containers is starting; and what
    the pool asks of it: an unclaimed container's CPU time so far. This base class meters
    nothing and reads that CPU time from the engine's stats API."""

    method: str | None = None

    def cgroup_parent(self, instance_id: str) -> str | None:
        return None

    def enforce_memory(self, cgroup_parent: str, memory_bytes: int) -> int:
        """Before the container's creation: set up what tells its OOM kills apart (runtimes/oom.py).
        Returns how far above the task's limit the engine's own must be (0: it is the limit)."""
        return 0

    async def begin(self, engine: DockerEngine, live: LiveContainer) -> Metering:
        raise NotImplementedError

    def release(self, cgroup_parent: str | None) -> None:
        pass

    def sweep(self, instance_id: str) -> int:  # how many dirs went
        return 0

    async def idle_cpu_ns(self, engine: DockerEngine, live: LiveContainer) -> int | None:
        """A container's CPU time so far, None when unreadable now: one sample of the engine's
        stats API (an engine call, slow on Engine 20.10, and competing with the tasks for the
        engine under load)."""
        try:
            sample = await asyncio.wait_for(engine.call(engine.api.stats, live.id, stream=False, one_shot=True), 2.0)
        except (TimeoutError, docker.errors.DockerException):
            return None
        return stats_cpu_ns(sample)


def _read(path: Path | None) -> str:
    try:
        return path.read_text() if path else ""
    except OSError:
        return ""


def _int(text: str | bytes) -> int | None:
    return int(text.split()[0]) if text.split() and text.split()[0].isdigit() else None


def parse_cpu_stat_usec(text: str) -> int | None:
    """`usage_usec` of a cgroup v2 cpu.stat."""
    found = re.search(r"^usage_usec (\d+)$", text, re.MULTILINE)
    return int(found[1]) if found else None


@dataclass
class _CgroupMetering:
    meter: CgroupMeter
    parent: str
    cpu_base: int | None
    peak_fd: int | None = None  # v2: an fd on memory.peak whose own watermark was reset at the claim

    async def finish(self) -> TaskUsage:
        try:
            cpu_now, peak = self.meter.cpu_ns(self.parent), None
            cpu = cpu_now - self.cpu_base if cpu_now is not None and self.cpu_base is not None else None
            if self.peak_fd is not None:
                with contextlib.suppress(OSError):
                    peak = _int(os.pread(self.peak_fd, 64, 0))
            peak = peak if peak is not None else _int(_read(self.meter.peak_file(self.parent)))
            # Since the container's creation, not its claim: only the agent ever ran in it.
            oom_kills = self.meter.oom.kills(self.parent)
        finally:
            self.abandon()
        if cpu is None and peak is None:
            log.warning("metering: no figures under %s (is the engine on this cgroup tree?)", self.parent)
            return TaskUsage(oom_kills=oom_kills)
        return TaskUsage(cpu_ns=cpu, peak_memory_bytes=peak, method="cgroup", oom_kills=oom_kills)

    def abandon(self) -> None:
        if self.peak_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.peak_fd)
            self.peak_fd = None


class CgroupMeter(Meter):
    """Reads a container's own parent cgroup after its exit (engine on the cgroupfs driver)."""

    method = "cgroup"

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = root
        self.v2 = (root / "cgroup.controllers").exists()
        self._stuck: set[str] = set()  # parents found busy at release: retried at each release
        self._hierarchies: list[Path] = []
        self._controllers: dict[str, Path] = {}
        self._oom: OomWatch | None = None
        self._oom_made = threading.Lock()

    @property
    def oom(self) -> OomWatch:
        """The OOM kills under this meter's parents (made at first use: the tree is there by then)."""
        with self._oom_made:  # arm and release run in threads (runtimes/launcher.py)
            if self._oom is None:
                self._oom = OomWatch(self.controller("memory"), v2=self.v2)
            return self._oom

    def cgroup_parent(self, instance_id: str) -> str:
        return f"/{_TOP}/{cgroup_name(instance_id)}/{uuid.uuid4().hex}"

    def enforce_memory(self, cgroup_parent: str, memory_bytes: int) -> int:
        return self.oom.arm(cgroup_parent, memory_bytes)

    def hierarchies(self) -> list[Path]:
        """Where runc creates the parent: v2, the one tree; v1, every mount under the root, named
        ones and a hybrid `unified` too, by their real names (`cpu` is often a link to `cpu,cpuacct`)."""
        if self.v2:
            return [self.root]
        if not self._hierarchies:  # the mounts stay as they are while we run: listed once
            with contextlib.suppress(OSError):
                self._hierarchies = sorted({entry.resolve() for entry in self.root.iterdir() if entry.is_dir()})
        return self._hierarchies

    def controller(self, name: str) -> Path | None:
        """The hierarchy of a controller; v1: `cpuacct`, `cpu,cpuacct`, `cpuacct,cpu`, …"""
        if self.v2:
            return self.root
        if name not in self._controllers:
            found = next((h for h in self.hierarchies() if name in h.name.split(",")), None)
            if found is None:
                return None
            self._controllers[name] = found
        return self._controllers[name]

    def _file(self, controller: str, parent: str, name: str) -> Path | None:
        hierarchy = self.controller(controller)
        return hierarchy / parent.lstrip("/") / name if hierarchy else None

    def cpu_ns(self, parent: str) -> int | None:
        """CPU time of everything that ran under the parent."""
        if not self.v2:
            return _int(_read(self._file("cpuacct", parent, "cpuacct.usage")))
        usec = parse_cpu_stat_usec(_read(self._file("cpu", parent, "cpu.stat")))
        return usec * 1000 if usec is not None else None

    async def idle_cpu_ns(self, engine: DockerEngine, live: LiveContainer) -> int | None:
        """From the container's own parent cgroup (a file read) when it has one."""
        if live.cgroup_parent is None:
            return await super().idle_cpu_ns(engine, live)
        return self.cpu_ns(live.cgroup_parent)

    def peak_file(self, parent: str) -> Path | None:
        """The parent's memory watermark (v1: since its last reset; v2, kernel >= 5.19: since creation)."""
        return self._file("memory", parent, "memory.peak" if self.v2 else "memory.max_usage_in_bytes")

    def peak_bytes(self, parent: str) -> int | None:
        return _int(_read(self.peak_file(parent)))

    async def begin(self, engine: DockerEngine, live: LiveContainer) -> Metering:
        if live.cgroup_parent is None:
            raise ValueError("the container was created without a cgroup parent")
        if not live.pooled:  # its parent is as new as it is: everything in it is the task's
            return _CgroupMetering(self, live.cgroup_parent, 0)
        metering = _CgroupMetering(self, live.cgroup_parent, self.cpu_ns(live.cgroup_parent))
        peak = self.peak_file(live.cgroup_parent)
        if peak is not None and not self.v2:
            try:  # v1: writing 0 resets the watermark to the current usage
                peak.write_text("0")
            except OSError as exc:
                log.warning("metering: could not reset %s (%s): the peak counts since creation", peak, exc)
        elif peak is not None:
            # v2: a write to memory.peak resets the watermark of that open file only (kernel >= 6.12),
            # so the fd is kept to the end. Older kernels refuse it (memory.peak is read-only there):
            # then the peak is the container's since creation, its wait in the pool included.
            with contextlib.suppress(OSError):
                fd = os.open(peak, os.O_RDWR)
                try:
                    os.write(fd, b"reset\n")
                    metering.peak_fd = fd
                except OSError:
                    os.close(fd)
        return metering

    def release(self, cgroup_parent: str | None) -> None:
        if cgroup_parent is not None:
            self.oom.disarm(cgroup_parent)
            self._stuck.add(cgroup_parent)
        for parent in list(self._stuck):
            # A list, not a generator: every hierarchy is tried, even after a busy one.
            if all([_rmdir(h / parent.lstrip("/")) for h in self.hierarchies()]):
                self._stuck.discard(parent)

    def sweep(self, instance_id: str) -> int:
        name, removed = cgroup_name(instance_id), 0
        for hierarchy in self.hierarchies():
            with contextlib.suppress(OSError):
                for slot in list((hierarchy / _TOP / name).iterdir()):
                    removed += slot.is_dir() and _rmdir(slot)
            _rmdir(hierarchy / _TOP / name)
        self._stuck = {p for p in self._stuck if not p.startswith(f"/{_TOP}/{name}/")}
        if removed:
            log.info("metering: swept %d empty cgroup dir(s) of %s", removed, instance_id)
        return removed


def _rmdir(path: Path) -> bool:
    """True when the directory is gone; a busy one (a child cgroup still there) stays."""
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            log.warning("metering: could not remove %s: %s", path, exc)
        return False
    return True


def stats_cpu_ns(sample: Any) -> int | None:
    """The total CPU ns of a stats sample; None when it has none."""
    try:
        return int(sample["cpu_stats"]["cpu_usage"]["total_usage"])
    except (KeyError, TypeError, ValueError):
        return None


def parse_stats(sample: dict[str, Any]) -> tuple[int, int, int | None] | None:
    """(total CPU ns, memory usage, v1 watermark or None) of a stats sample; None for an
    empty one (not started yet, or exited: its cgroup is gone)."""
    memory = sample.get("memory_stats") or {}
    cpu = stats_cpu_ns(sample)
    try:
        usage = int(memory["usage"])
        max_usage = int(memory["max_usage"]) if "max_usage" in memory else None  # cgroup v1 only
    except (KeyError, TypeError, ValueError):
        return None
    return (cpu, usage, max_usage) if cpu is not None and cpu > 0 else None


@dataclass
class _StatsMetering:
    engine: DockerEngine
    container_id: str
    cpu_base: int | None  # None: the first sample is the baseline
    watermark_is_task: bool  # a cold container's v1 watermark covers only its task
    cpu_last: int | None = None
    peak: int | None = None
    sampler: asyncio.Task[None] | None = field(default=None, repr=False)

    async def sample_until_gone(self, interval_s: float) -> None:
        stats = self.engine.api.stats
        while True:
            try:
                raw = await asyncio.wait_for(self.engine.call(stats, self.container_id, stream=False, one_shot=True), 5)
            except Exception as exc:  # gone, or an engine hiccup: keep what we have
                log.debug("metering: stats of %s: %s", self.container_id[:12], exc)
                raw = {}
            parsed = parse_stats(raw)
            if parsed is not None:
                self.record(*parsed)
            elif self.cpu_last is not None:
                return  # it exited: nothing more will come
            await asyncio.sleep(interval_s)

    def record(self, cpu: int, usage: int, max_usage: int | None) -> None:
        if self.cpu_base is None:
            self.cpu_base = cpu
        else:
            self.cpu_last = max(cpu, self.cpu_last or 0)
        seen = [usage, self.peak or 0] + ([max_usage] if max_usage is not None and self.watermark_is_task else [])
        self.peak = max(seen)

    async def finish(self) -> TaskUsage:
        self.abandon()
        if self.cpu_last is None or self.cpu_base is None:
            return TaskUsage()  # it ended before its first sample
        return TaskUsage(cpu_ns=max(self.cpu_last - self.cpu_base, 0), peak_memory_bytes=self.peak, method="stats")

    def abandon(self) -> None:
        if self.sampler is not None:
            self.sampler.cancel()


class StatsMeter(Meter):
    """Samples the engine's stats API while the task runs: the highest memory, the last CPU. It
    loses the tail (after the exit the stats are empty): a task that ends before its first
    sample reports nothing. The engine answers once a second per container however often we
    ask (Docker 20.10), and each sample holds an engine thread until it answers. Baselines:
    0 for a cold container (it ran nothing but its task); for a pooled one, the pool's last
    sample of it unclaimed, else its first sample after the claim. The v1 watermark
    (`max_usage`) counts only for a cold container: a pooled one's covers its wait."""

    method = "stats"

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s

    async def begin(self, engine: DockerEngine, live: LiveContainer) -> Metering:
        metering = _StatsMetering(engine, live.id, live.idle_cpu_ns if live.pooled else 0, not live.pooled)
        metering.sampler = asyncio.create_task(metering.sample_until_gone(self.interval_s))
        return metering


def cgroup_usable(engine_info: dict[str, Any], cgroup_root: Path = CGROUP_ROOT) -> str | None:
    """None when CgroupMeter works here, else why not."""
    driver = engine_info.get("CgroupDriver")
    if driver != "cgroupfs":
        return f"the engine's cgroup driver is {driver!r}, not 'cgroupfs'"
    meter = CgroupMeter(cgroup_root)
    ours = "2" if meter.v2 else "1"
    if str(engine_info.get("CgroupVersion", ours)) != ours:
        return f"the engine runs cgroup v{engine_info.get('CgroupVersion')}, {cgroup_root} is v{ours}"
    for name in ("cpu" if meter.v2 else "cpuacct", "memory"):
        hierarchy = meter.controller(name)
        if hierarchy is None or not os.access(hierarchy, os.W_OK):  # we must be root on the host
            return f"no writable {name} hierarchy under {cgroup_root}"
    return None


def choose_meter(setting: str, engine_info: dict[str, Any], cgroup_root: Path = CGROUP_ROOT) -> Meter | None:
    """`Settings.metering`: auto (cgroup when it works here, else stats) | cgroup | stats | off."""
    if setting == "off":
        log.info("metering: off")
        return None
    why_not = cgroup_usable(engine_info, cgroup_root) if setting != "stats" else "it was asked for"
    if setting == "cgroup" or why_not is None:
        if why_not:
            log.warning("metering: cgroup forced, though %s", why_not)
        meter = CgroupMeter(cgroup_root)
        log.info("metering: a parent cgroup per container, under %s (v%s)", cgroup_root, 2 if meter.v2 else 1)
        return meter
    log.info("metering: the engine's stats API, as %s", why_not)
    return StatsMeter()
