"""Where a task's milliseconds go, for bench/latency.py: the service's own phases (its
Server-Timing header, EXECUTOR_SERVER_TIMING=true), the floor they are compared with, and the
CPU each part of the orchestration spends per execution.

The floor is a pre-started container's own round trip, driven directly with docker-py and no
service: the container created (same image, command and hardening as the service's), attached
and started beforehand, exactly as the pool holds one; then, timed: write stdin, close it, read
stdout to its end, and the engine's wait for the exit. Nothing a service could do for a pooled
task is cheaper than that.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from runtimes.base import TASK_USER, TaskLimits, TaskSpec
from runtimes.engine import DockerEngine
from runtimes.launcher import hardened_host_config

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PHASE = re.compile(r"\s*([a-z]+);dur=([0-9.]+)\s*")
# The service's phases in the order they happen, with what each one is (docs/benchmarks.md).
PHASES = {
    "authenticated": "HTTP parse, request id, the token's row read",
    "admitted": "contract check, rate limit, queue depth, agent, input schema",
    "accepted": "the accepting transaction (entitlement, insert)",
    "read": "XADD, and the worker's XREADGROUP wakes with the job",
    "claimed": "the claim (PENDING -> RUNNING)",
    "container": "a pooled container taken (or a cold one created and started)",
    "output": "stdin written, stdout read to its end",
    "exited": "the engine's wait for the exit",
    "metered": "cgroup usage read",
    "checked": "output parsed and checked against its schema",
    "finished": "the finishing transaction: state, cost, receipt, log leaf",
    "woken": "the waiting request woken: in the same process at once, else by the FINISHED event",
    "reread": "the final record read (only in another process than the worker's)",
    "answered": "the answer serialized",
}


@dataclass
class Timings:
    """Samples of each phase (ms), the client's whole round trip and the service's total."""

    phases: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    client_ms: list[float] = field(default_factory=list)

    def add(self, client_s: float, header: str | None) -> None:
        self.client_ms.append(client_s * 1000)
        for part in (header or "").split(","):
            found = _PHASE.fullmatch(part)
            if found:
                self.phases[found.group(1)].append(float(found.group(2)))

    def rows(self) -> list[tuple[str, float, float]]:
        """(phase, p50, p95) in the order of PHASES; then the HTTP round trip outside the
        service's own total, and the client's whole."""
        found = [(name, statistics.median(self.phases[name]), percentile(self.phases[name], 95))
                 for name in PHASES if self.phases.get(name)]
        totals = self.phases.get("total") or []
        if totals and len(totals) == len(self.client_ms):
            outside = [client - total for client, total in zip(self.client_ms, totals, strict=True)]
            found.append(("client<->service", statistics.median(outside), percentile(outside, 95)))
        if self.client_ms:
            found.append(("= client round trip", statistics.median(self.client_ms), percentile(self.client_ms, 95)))
        return found


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def phase_table(columns: dict[str, Timings], floors: dict[str, list[float]]) -> str:
    """One row per phase, p50 / p95 per path; the floor of each path's runtime last."""
    names = list(columns)
    lines = ["| phase | " + " | ".join(f"{n} p50 | {n} p95" for n in names) + " | what |",
             "|---|" + "---|---|" * len(names) + "---|"]
    by_path = {name: {row[0]: row[1:] for row in timings.rows()} for name, timings in columns.items()}
    order = [*PHASES, "client<->service", "= client round trip"]
    for phase in order:
        if not any(phase in rows for rows in by_path.values()):
            continue
        cells = []
        for name in names:
            p50, p95 = by_path[name].get(phase, (None, None))
            cells.append("-" if p50 is None else f"{p50:.1f}")
            cells.append("-" if p95 is None else f"{p95:.1f}")
        lines.append(f"| {phase} | " + " | ".join(cells) + f" | {PHASES.get(phase, '')} |")
    for runtime, samples in floors.items():
        lines.append(f"| floor ({runtime}) | " + " | ".join(
            f"{statistics.median(samples):.1f} | {percentile(samples, 95):.1f}" for _ in names)
            + " | a pre-started container's own round trip, no service |")
    return "\n".join(lines)


def floor_round_trip(engine: DockerEngine, image: str, payload: bytes, limits: TaskLimits,
                     oci_runtime: str | None = None) -> float:
    """Seconds from the first byte of stdin to the engine's answer that the container exited,
    on a container created, attached and started beforehand (untimed), as the pool holds one."""
    api = engine.api
    spec = TaskSpec("bench-floor", image, ["cat"], payload, limits, 1 << 20, 1 << 20, 16, oci_runtime=oci_runtime)
    container = api.create_container(image, ["cat"], user=TASK_USER, stdin_open=True, network_disabled=True,
                                     host_config=hardened_host_config(engine, spec))
    try:
        attached = api.attach_socket(container["Id"], params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        raw = attached._sock
        api.start(container["Id"])
        t0 = time.perf_counter()
        raw.sendall(payload)
        raw.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
        api.wait(container["Id"])
        elapsed = time.perf_counter() - t0
        raw.close()
    finally:
        api.remove_container(container["Id"], force=True)
    if not received.endswith(payload):
        raise AssertionError(f"unexpected output {received[-80:]!r}")
    return elapsed


def floor_parts(engine: DockerEngine, image: str, payload: bytes, limits: TaskLimits,
                oci_runtime: str | None = None, idle_s: float = 0.0) -> tuple[float, float, float]:
    """The floor's round trip in three (seconds), on a container left idle `idle_s` after its
    start (as a pooled one waits for its task): stdin written to the first byte of output (`cat`
    echoes it), stdin closed to the end of the output (the process exits, the engine tears the
    container down: the attach stream ends only after that), and the end of the output to the
    engine's answer to a wait."""
    api = engine.api
    spec = TaskSpec("bench-floor", image, ["cat"], payload, limits, 1 << 20, 1 << 20, 16, oci_runtime=oci_runtime)
    container = api.create_container(image, ["cat"], user=TASK_USER, stdin_open=True, network_disabled=True,
                                     host_config=hardened_host_config(engine, spec))
    try:
        raw = api.attach_socket(container["Id"], params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})._sock
        api.start(container["Id"])
        time.sleep(idle_s)
        t0 = time.perf_counter()
        raw.sendall(payload)
        received = raw.recv(65536)
        t1 = time.perf_counter()
        raw.shutdown(socket.SHUT_WR)
        while chunk := raw.recv(65536):
            received += chunk
        t2 = time.perf_counter()
        api.wait(container["Id"])
        t3 = time.perf_counter()
        raw.close()
    finally:
        api.remove_container(container["Id"], force=True)
    if not received.endswith(payload):
        raise AssertionError(f"unexpected output {received[-80:]!r}")
    return t1 - t0, t2 - t1, t3 - t2


def parts_table(parts: dict[tuple[str, float], list[tuple[float, float, float]]]) -> str:
    """p50 of each part of the floor (ms), per runtime and idle time."""
    lines = ["| runtime | idle before the input | first byte of output | stdin closed -> output ended "
             "| output ended -> exit answered | total |", "|---|---|---|---|---|---|"]
    for (runtime, idle_s), samples in parts.items():
        columns = [statistics.median(sample[i] for sample in samples) * 1000 for i in range(3)]
        total = statistics.median(sum(sample) for sample in samples) * 1000
        lines.append(f"| {runtime} | {idle_s * 1000:.0f} ms | " + " | ".join(f"{c:.1f}" for c in columns)
                     + f" | {total:.1f} |")
    return "\n".join(lines)


def machine_jiffies() -> tuple[int, int]:
    """(idle, total) CPU time of the whole machine so far, from /proc/stat (idle counts iowait)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # user nice system idle iowait irq softirq steal


def idle_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of the machine's CPU time left idle between two machine_jiffies()."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def process_cpu_s(pid: int) -> float:
    """utime + stime of a live process, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_by_command(*commands: str) -> float:
    """CPU seconds of every live process whose name is one of `commands` (the bench's own
    PostgreSQL and Redis are the only ones on the machine it runs on)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() in commands:
                    total += process_cpu_s(int(proc.name))
            except OSError:
                continue
    return total


def cpu_snapshot(service_pid: int) -> dict[str, float]:
    """CPU seconds so far of the service (API and worker in one process), PostgreSQL, Redis and
    the engine (dockerd, containerd)."""
    return {"service": process_cpu_s(service_pid), "postgres": cpu_by_command("postgres"),
            "redis": cpu_by_command("redis-server"), "engine": cpu_by_command("dockerd", "containerd")}


def cpu_per_execution(before: dict[str, float], after: dict[str, float], executions: int) -> dict[str, float]:
    return {part: (after[part] - before[part]) * 1000 / executions for part in before}
