"""Latency and throughput of executor against raw Docker, measured in one run.

    .venv/bin/python bench/latency.py [-n 40] [--concurrency 8] [--total 96]

It starts its own PostgreSQL and Redis and two `executor serve` processes, one
with the pool of pre-started containers (the default) and one without it,
registers a trivial agent (`cat` on the busybox image) in each and compares,
on the same image with the same hardening flags:

  api pooled   POST /v1/executions?wait=30, pre-started containers
  api cold     the same with EXECUTOR_POOL_ENABLED=false
  docker-run   `docker run --rm -i` with the same flags
  docker-py    create / attach / start / write stdin / read / wait / remove

then sustained throughput with C concurrent clients: both services against
raw docker-py at the same concurrency. Absolute times vary between machines;
the ratios are the result. An agent with egress, next to the same image without
it, pooled and cold: bench/egress.py (it needs an HTTPS upstream and a CA of its
own, so it runs apart).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import docker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.phases import (  # noqa: E402
    Timings,
    cpu_per_execution,
    cpu_snapshot,
    floor_parts,
    floor_round_trip,
    idle_share,
    machine_jiffies,
    parts_table,
    phase_table,
)
from executor.embedded import EmbeddedPostgres, EmbeddedRedis, free_port  # noqa: E402
from runtimes.base import TASK_USER, TaskLimits, TaskSpec  # noqa: E402
from runtimes.container import hardened_host_config  # noqa: E402
from runtimes.engine import DockerEngine  # noqa: E402
from runtimes.images import build_images  # noqa: E402

# pids 64, the service's default: gVisor's own threads count against the limit, and runsc fails to start
# a sandbox under 32 (measured: `docker run --runtime runsc --pids-limit 32` exits 125).
LIMITS = TaskLimits(memory_mb=64, cpus=1.0, pids=64, timeout_s=10.0)
INPUT = {"text": "hello world"}
PAYLOAD = json.dumps(INPUT, separators=(",", ":")).encode()
FLOOR_IDLE_S = (0.0, 0.3)  # the floor in parts: used at once, and after a pooled container's short wait


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def docker_run_args(image: str) -> list[str]:
    """The same hardening as the service, as `docker run` flags."""
    return [
        "docker", "run", "--rm", "-i", "--network", "none", "--memory", f"{LIMITS.memory_mb}m",
        "--memory-swap", f"{LIMITS.memory_mb}m", "--cpus", str(LIMITS.cpus), "--pids-limit", str(LIMITS.pids),
        "--read-only", "--tmpfs", "/tmp:rw,noexec,nosuid,nodev,size=16m", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--user", TASK_USER, "--ulimit", "nofile=256:256",
        "--ulimit", f"fsize={16 * 1024 * 1024}", "--ulimit", "core=0", "--log-driver", "none", image, "cat",
    ]


def raw_docker_run(image: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(docker_run_args(image), input=PAYLOAD, capture_output=True, check=True)
    elapsed = time.perf_counter() - t0
    assert json.loads(done.stdout) == INPUT
    return elapsed


def raw_docker_py(engine: DockerEngine, image: str, labels: dict[str, str] | None = None) -> float:
    """The cold path a careful docker-py user writes: one client, attach before start, remove
    before the clock stops (and, should a step fail, still remove)."""
    api = engine.api
    spec = TaskSpec("bench", image, ["cat"], PAYLOAD, LIMITS, 1 << 20, 1 << 20, 16)
    t0 = time.perf_counter()
    container = api.create_container(image, ["cat"], user=TASK_USER, stdin_open=True, network_disabled=True,
                                     host_config=hardened_host_config(engine, spec), labels=labels)
    try:
        attached = api.attach_socket(container["Id"], params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        raw = attached._sock
        api.start(container["Id"])
        raw.sendall(PAYLOAD)
        raw.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
        raw.close()
        api.wait(container["Id"])
    finally:
        api.remove_container(container["Id"], force=True)
    elapsed = time.perf_counter() - t0
    if not received.endswith(PAYLOAD):
        raise AssertionError(f"unexpected output {received[-80:]!r}")
    return elapsed


async def api_run(session: aiohttp.ClientSession, base_url: str, token: str, agent_id: str,
                  timings: Timings | None = None) -> float:
    t0 = time.perf_counter()
    async with session.post(f"{base_url}/v1/executions?wait=30", json={"agent_id": agent_id, "input": INPUT},
                            headers={"Authorization": f"Bearer {token}"}) as response:
        record = await response.json()
    elapsed = time.perf_counter() - t0
    assert record["status"] == "COMPLETED" and record["output"] == INPUT, record
    if timings is not None:
        timings.add(elapsed, response.headers.get("Server-Timing"))
    return elapsed


async def api_sequential(base_url: str, token: str, agent_id: str, n: int,
                         timings: Timings | None = None, gap_s: float = 0.0) -> list[float]:
    """n runs one after the other; with `gap_s`, that long between an answer and the next request."""
    samples = []
    async with aiohttp.ClientSession() as session:
        for _ in range(n):
            samples.append(await api_run(session, base_url, token, agent_id, timings))
            if gap_s:
                await asyncio.sleep(gap_s)
    return samples


async def api_throughput(base_url: str, token: str, agent_id: str, concurrency: int, total: int,
                         timings: Timings | None = None) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        remaining = total

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await api_run(session, base_url, token, agent_id, timings)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return total / (time.perf_counter() - t0)


def docker_py_throughput(engine: DockerEngine, image: str, concurrency: int, total: int) -> float:
    with ThreadPoolExecutor(concurrency) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda _: raw_docker_py(engine, image), range(total)))
        return total / (time.perf_counter() - t0)


def start_service(database_url: str, redis_url: str, state_dir: Path, token: str,
                  pool: bool, extra: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_")}
    env.update(EXECUTOR_DATABASE_URL=database_url, EXECUTOR_REDIS_URL=redis_url, EXECUTOR_STATE_DIR=str(state_dir),
               EXECUTOR_PORT=str(port), EXECUTOR_BOOTSTRAP_TOKEN=token, EXECUTOR_POOL_ENABLED=str(pool).lower(),
               **(extra or {}))
    # The child keeps its own copy of the descriptor: ours can close once it has started.
    with open(state_dir / "service.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "executor", "serve"], env=env, cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=1):
                return process, base_url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError((state_dir / "service.log").read_text()[-2000:])


@dataclass(frozen=True)
class Backends:
    workdir: Path
    postgres: EmbeddedPostgres
    redis_url: str
    image: str  # the busybox image's tag
    token: str  # the operator token the services are started with


@contextlib.contextmanager
def backends(prefix: str) -> Iterator[Backends]:
    """Private PostgreSQL and Redis servers under a temp dir, the busybox image and an operator
    token; stopped and removed after (stop the services started on them first)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    workdir.chmod(0o755)
    postgres = EmbeddedPostgres(workdir / "pg", port=free_port())
    redis_server = EmbeddedRedis(workdir / "redis", port=free_port())
    client = docker.from_env()
    try:
        image = build_images(client, ["busybox"], progress=lambda line: None)[0].tag
        postgres.start()
        redis_url = redis_server.start()
        yield Backends(workdir, postgres, redis_url, image, "exe_bench_" + secrets.token_urlsafe(16))
    finally:
        client.close()
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def serving(database_url: str, redis_url: str, state_dir: Path, token: str, pool: bool,
            extra: dict[str, str] | None = None) -> Iterator[str]:
    """`start_service`, stopped after; yields its base URL."""
    process, base_url = start_service(database_url, redis_url, state_dir, token, pool, extra)
    try:
        yield base_url
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(120)


def register_agent(base_url: str, token: str, image: str) -> str:
    body = json.dumps({"name": f"bench-cat-{secrets.token_hex(3)}", "image": image, "command": ["cat"],
                       "input_schema": {"type": "object"}, "output_schema": {"type": "object"},
                       "limits": dataclasses.asdict(LIMITS)}).encode()
    request = urllib.request.Request(base_url + "/v1/agents", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())["id"]


def pool_status(base_url: str, token: str) -> dict:
    request = urllib.request.Request(base_url + "/v1/status", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())["pool"]


def hit_rate(before: dict, after: dict) -> str:
    hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
    return f"{100 * hits / (hits + misses):.0f}% ({hits} hits, {misses} misses)" if hits + misses else "-"


def row(name: str, samples: list[float], reference: float, floor: float) -> str:
    p50, p95 = statistics.median(samples) * 1000, percentile(samples, 95) * 1000
    return (f"| {name:<24} | {p50:8.1f} | {p95:8.1f} | {max(samples) * 1000:8.1f} | {p50 / reference:10.2f}x "
            f"| {p50 - floor:+9.1f} |")


def verdict(value: float, target: float, *, at_most: bool) -> str:
    met = value <= target if at_most else value >= target
    return f"{value:.3f} (target {'<=' if at_most else '>='} {target}): {'met' if met else 'NOT met'}"


SPACED = "pooled runc, 250 ms apart"


@dataclass
class ServicePath:
    """One way of running the task through the service: its process, base URL and agent."""

    name: str
    pool: bool
    runtime: str
    process: subprocess.Popen | None = None
    base_url: str = ""
    agent_id: str = ""


def runsc_available(client: docker.DockerClient) -> bool:
    return "runsc" in (client.info().get("Runtimes") or {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=40, help="sequential runs per path")
    parser.add_argument("--concurrency", default="8,32", help="comma-separated client counts for throughput")
    parser.add_argument("--total", type=int, default=96, help="executions per throughput measurement")
    parser.add_argument("--no-runsc", action="store_true", help="leave out the gVisor paths")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="executor-bench-"))
    workdir.chmod(0o755)
    postgres = EmbeddedPostgres(workdir / "pg", port=free_port())
    redis_server = EmbeddedRedis(workdir / "redis", port=free_port())
    client = docker.from_env()
    image = build_images(client, ["busybox"], progress=lambda line: None)[0].tag
    # The reference is stock docker-py, as a user writes it: not the service's tuned client.
    threads = max(32, 2 * max(concurrencies))
    engine = DockerEngine(threads=threads, client=docker.from_env(max_pool_size=threads))
    runtimes = ["runc"] + ([] if args.no_runsc or not runsc_available(client) else ["runsc"])
    paths = [ServicePath(f"{'pooled' if pool else 'cold'} {runtime}", pool, runtime)
             for runtime in runtimes for pool in (True, False)]
    timings = {path.name: Timings() for path in paths} | {SPACED: Timings()}
    concurrent_timings: dict[tuple[str, int], Timings] = {}
    floors: dict[str, list[float]] = {runtime: [] for runtime in runtimes}
    parts: dict[tuple[str, float], list[tuple[float, float, float]]] = {}
    samples: dict[str, list[float]] = {path.name: [] for path in paths} | {"run": [], "py": [], SPACED: []}
    throughput: dict[tuple[str, int], float] = {}
    idle: dict[tuple[str, int], float] = {}  # the machine's CPU left idle during each throughput run
    cpu: dict[tuple[str, int], dict[str, float]] = {}
    try:
        postgres.start()
        redis_url = redis_server.start()
        token = "exe_bench_" + secrets.token_urlsafe(16)
        for index, path in enumerate(paths):
            extra = {"EXECUTOR_SERVER_TIMING": "true", "EXECUTOR_OCI_RUNTIME": path.runtime,
                     "EXECUTOR_OCI_RUNTIMES": ",".join(runtimes)}
            path.process, path.base_url = start_service(
                postgres.create_database(f"bench_{index}"), redis_url.rsplit("/", 1)[0] + f"/{index}",
                workdir / f"service-{index}", token, path.pool, extra)
            path.agent_id = register_agent(path.base_url, token, image)

        for _ in range(3):  # warm up every path once
            raw_docker_run(image), raw_docker_py(engine, image)
            for runtime in runtimes:
                floor_round_trip(engine, image, PAYLOAD, LIMITS, runtime)
        for path in paths:
            asyncio.run(api_sequential(path.base_url, token, path.agent_id, 3))

        # Interleave the paths in rounds so drift in the machine hits them alike.
        for _ in range(args.n // 10 or 1):
            for path in paths:
                samples[path.name] += asyncio.run(api_sequential(path.base_url, token, path.agent_id, 10,
                                                                 timings[path.name]))
            # The pooled service again, each request 250 ms after the last answer: by then the engine
            # has removed the last container and started its replacement, as a sparse client sees it.
            samples[SPACED] += asyncio.run(api_sequential(paths[0].base_url, token, paths[0].agent_id, 10,
                                                          timings[SPACED], gap_s=0.25))
            samples["run"] += [raw_docker_run(image) for _ in range(10)]
            samples["py"] += [raw_docker_py(engine, image) for _ in range(10)]
            for runtime in runtimes:
                floors[runtime] += [floor_round_trip(engine, image, PAYLOAD, LIMITS, runtime) * 1000
                                    for _ in range(10)]
                for idle_s in FLOOR_IDLE_S:
                    parts.setdefault((runtime, idle_s), []).extend(
                        floor_parts(engine, image, PAYLOAD, LIMITS, runtime, idle_s) for _ in range(3))

        # CPU per execution and throughput: one service at a time, each stopped after (a pooled
        # one's idle containers would load the engine the next one measures).
        for path in paths:
            assert path.process is not None
            before = cpu_snapshot(path.process.pid)
            asyncio.run(api_sequential(path.base_url, token, path.agent_id, args.n))
            cpu[(path.name, 1)] = cpu_per_execution(before, cpu_snapshot(path.process.pid), args.n)
            for concurrency in concurrencies:
                found = concurrent_timings.setdefault((path.name, concurrency), Timings())
                before = cpu_snapshot(path.process.pid)
                machine = machine_jiffies()
                throughput[(path.name, concurrency)] = asyncio.run(api_throughput(
                    path.base_url, token, path.agent_id, concurrency, args.total, found))
                idle[(path.name, concurrency)] = idle_share(machine, machine_jiffies())
                cpu[(path.name, concurrency)] = cpu_per_execution(before, cpu_snapshot(path.process.pid),
                                                                  args.total)
            path.process.terminate()
            path.process.wait(60)
            time.sleep(2)
        for concurrency in concurrencies:
            machine = machine_jiffies()
            throughput[("py", concurrency)] = docker_py_throughput(engine, image, concurrency, args.total)
            idle[("py", concurrency)] = idle_share(machine, machine_jiffies())
    finally:
        for path in paths:
            if path.process is not None and path.process.poll() is None:
                path.process.terminate()
                path.process.wait(60)
        engine.close()
        client.close()
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report(args, paths, samples, floors, timings, concurrent_timings, throughput, cpu, concurrencies)
    print("\nthe machine's CPU left idle during each throughput run (both cores, all processes: the engine,"
          " the service, the clients):\n")
    print("| path | " + " | ".join(f"{c} clients" for c in concurrencies) + " |")
    print("|---|" + "---|" * len(concurrencies))
    for name in [path.name for path in paths] + ["py"]:
        label = "raw docker-py (cold)" if name == "py" else f"api, {name}"
        print(f"| {label} | " + " | ".join(f"{100 * idle[(name, c)]:.0f}%" for c in concurrencies) + " |")
    print("\nthe floor in parts (p50, ms; 3 a round per runtime and idle time): what the engine takes"
          " once the task has answered\n")
    print(parts_table(parts))


def report(args: argparse.Namespace, paths: list[ServicePath], samples: dict[str, list[float]],
           floors: dict[str, list[float]], timings: dict[str, Timings],
           concurrent_timings: dict[tuple[str, int], Timings], throughput: dict[tuple[str, int], float],
           cpu: dict[tuple[str, int], dict[str, float]], concurrencies: list[int]) -> None:
    median = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    floor = {runtime: statistics.median(values) for runtime, values in floors.items()}
    print(f"\nexecutor latency benchmark: {len(samples['py'])} sequential runs per path, busybox `cat`, "
          "same hardening, interleaved\n")
    print("| path                     | p50 ms   | p95 ms   | max ms   | p50 / docker-py | p50 - floor |")
    print("|--------------------------|----------|----------|----------|-----------------|-------------|")
    for path in paths:
        print(row(f"api, {path.name}", samples[path.name], median["py"], floor[path.runtime]))
    print(row(f"api, {SPACED}", samples[SPACED], median["py"], floor["runc"]))
    print(row("raw docker run --rm -i", samples["run"], median["py"], floor["runc"]))
    print(row("raw docker-py (cold)", samples["py"], median["py"], floor["runc"]))
    for runtime, values in floors.items():
        print(row(f"floor, {runtime}", [v / 1000 for v in values], median["py"], floor[runtime]))

    print("\nwhere the time goes, one client (ms, from the service's Server-Timing marks):\n")
    print(phase_table(timings, floors))
    for concurrency in concurrencies:
        print(f"\nwhere the time goes at {concurrency} concurrent clients (ms):\n")
        print(phase_table({name: t for (name, c), t in concurrent_timings.items() if c == concurrency}, {}))

    print(f"\nthroughput, {args.total} executions per measurement (exec/s, and / docker-py at the same "
          "concurrency):\n")
    print("| path | " + " | ".join(f"{c} clients | / docker-py" for c in concurrencies) + " |")
    print("|---|" + "---|---|" * len(concurrencies))
    for name in [path.name for path in paths] + ["py"]:
        label = "raw docker-py (cold)" if name == "py" else f"api, {name}"
        print(f"| {label} | " + " | ".join(
            f"{throughput[(name, c)]:.2f} | {throughput[(name, c)] / throughput[('py', c)]:.2f}x"
            for c in concurrencies) + " |")

    print("\norchestration CPU per execution (ms; from /proc; the engine is dockerd + containerd):\n")
    print("| path | clients | service (API + worker) | PostgreSQL | Redis | engine |")
    print("|---|---|---|---|---|---|")
    for (name, clients), parts in cpu.items():
        print(f"| {name} | {clients} | {parts['service']:.1f} | {parts['postgres']:.1f} | {parts['redis']:.1f} "
              f"| {parts['engine']:.1f} |")

    print()
    for path in paths:
        if path.pool:
            print(f"api {path.name} p50 - floor ({path.runtime}) = "
                  + verdict(median[path.name] - floor[path.runtime], 10.0, at_most=True) + " ms")
    print(f"api {SPACED} p50 - floor (runc) = " + verdict(median[SPACED] - floor["runc"], 10.0, at_most=True) + " ms")
    print("api cold runc p50 / docker-py p50 = " + verdict(median["cold runc"] / median["py"], 1.05, at_most=True))
    for concurrency in concurrencies:
        for name in ("pooled runc", "cold runc"):
            print(f"api {name} throughput / docker-py at {concurrency} clients = "
                  + verdict(throughput[(name, concurrency)] / throughput[("py", concurrency)], 1.0, at_most=False))
    print("api pooled runc p50 / docker run p50 = " + verdict(median["pooled runc"] / median["run"], 0.15,
                                                              at_most=True))


if __name__ == "__main__":
    main()
