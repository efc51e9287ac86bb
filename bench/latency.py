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
the ratios are the result.
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

from executor.embedded import EmbeddedPostgres, EmbeddedRedis, free_port  # noqa: E402
from runtimes.base import TASK_USER, TaskLimits, TaskSpec  # noqa: E402
from runtimes.container import hardened_host_config  # noqa: E402
from runtimes.engine import DockerEngine  # noqa: E402
from runtimes.images import build_images  # noqa: E402

LIMITS = TaskLimits(memory_mb=64, cpus=1.0, pids=32, timeout_s=10.0)
INPUT = {"text": "hello world"}
PAYLOAD = json.dumps(INPUT, separators=(",", ":")).encode()


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


async def api_run(session: aiohttp.ClientSession, base_url: str, token: str, agent_id: str) -> float:
    t0 = time.perf_counter()
    async with session.post(f"{base_url}/v1/executions?wait=30", json={"agent_id": agent_id, "input": INPUT},
                            headers={"Authorization": f"Bearer {token}"}) as response:
        record = await response.json()
    elapsed = time.perf_counter() - t0
    assert record["status"] == "COMPLETED" and record["output"] == INPUT, record
    return elapsed


async def api_sequential(base_url: str, token: str, agent_id: str, n: int) -> list[float]:
    async with aiohttp.ClientSession() as session:
        return [await api_run(session, base_url, token, agent_id) for _ in range(n)]


async def api_throughput(base_url: str, token: str, agent_id: str, concurrency: int, total: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        remaining = total

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await api_run(session, base_url, token, agent_id)

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


def row(name: str, samples: list[float], reference: float) -> str:
    p50, p95 = statistics.median(samples) * 1000, percentile(samples, 95) * 1000
    return f"| {name:<22} | {p50:8.1f} | {p95:8.1f} | {max(samples) * 1000:8.1f} | {p50 / reference:10.2f}x |"


def verdict(value: float, target: float, *, at_most: bool) -> str:
    met = value <= target if at_most else value >= target
    return f"{value:.2f} (target {'<=' if at_most else '>='} {target}): {'met' if met else 'NOT met'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=40, help="sequential runs per path")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--total", type=int, default=96, help="executions per throughput measurement")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="executor-bench-"))
    workdir.chmod(0o755)
    postgres = EmbeddedPostgres(workdir / "pg", port=free_port())
    redis_server = EmbeddedRedis(workdir / "redis", port=free_port())
    client = docker.from_env()
    image = build_images(client, ["busybox"], progress=lambda line: None)[0].tag
    # The reference is stock docker-py, as a user writes it: not the service's tuned client.
    engine = DockerEngine(threads=max(32, args.concurrency * 2),
                          client=docker.from_env(max_pool_size=max(32, args.concurrency * 2)))
    processes = []
    try:
        postgres.start()
        redis_url = redis_server.start()
        token = "exe_bench_" + secrets.token_urlsafe(16)
        services = {}
        for index, (name, pool) in enumerate((("pooled", True), ("cold", False))):
            process, base_url = start_service(postgres.create_database(f"bench_{name}"),
                                              redis_url.rsplit("/", 1)[0] + f"/{index}", workdir / name, token, pool)
            processes.append(process)
            services[name] = (base_url, register_agent(base_url, token, image))

        for _ in range(3):  # warm up every path once
            raw_docker_run(image), raw_docker_py(engine, image)
        for base_url, agent_id in services.values():
            asyncio.run(api_sequential(base_url, token, agent_id, 3))
        pool_before = pool_status(services["pooled"][0], token)

        # Interleave the paths in rounds so drift in the machine hits them alike.
        samples: dict[str, list[float]] = {"pooled": [], "cold": [], "run": [], "py": []}
        for _ in range(args.n // 10 or 1):
            for name in ("pooled", "cold"):
                base_url, agent_id = services[name]
                samples[name] += asyncio.run(api_sequential(base_url, token, agent_id, 10))
            samples["run"] += [raw_docker_run(image) for _ in range(10)]
            samples["py"] += [raw_docker_py(engine, image) for _ in range(10)]
        pool_sequential = pool_status(services["pooled"][0], token)
        # Throughput: one path at a time, the pooled service stopped before the others run
        # (its idle containers and their checks would load the engine they measure).
        throughput = {}
        base_url, agent_id = services["pooled"]
        throughput["pooled"] = asyncio.run(api_throughput(base_url, token, agent_id, args.concurrency, args.total))
        pool_concurrent = pool_status(base_url, token)
        processes[0].terminate()
        processes[0].wait(60)
        time.sleep(2)
        base_url, agent_id = services["cold"]
        throughput["cold"] = asyncio.run(api_throughput(base_url, token, agent_id, args.concurrency, args.total))
        time.sleep(2)
        throughput["py"] = docker_py_throughput(engine, image, args.concurrency, args.total)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(60)
        engine.close()
        client.close()
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    median = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    print(f"\nexecutor latency benchmark: {len(samples['py'])} sequential runs per path, busybox `cat`, "
          "same hardening\n")
    print("| path                   | p50 ms   | p95 ms   | max ms   | p50 / docker-py |")
    print("|------------------------|----------|----------|----------|-------------|")
    print(row("api, pooled", samples["pooled"], median["py"]))
    print(row("api, cold (no pool)", samples["cold"], median["py"]))
    print(row("raw docker run --rm -i", samples["run"], median["py"]))
    print(row("raw docker-py", samples["py"], median["py"]))
    print(f"\npool hit rate, sequential: {hit_rate(pool_before, pool_sequential)}")
    print(f"\nthroughput at {args.concurrency} concurrent clients, {args.total} executions per path:\n")
    print("| path                | exec/s  | / docker-py |")
    print("|---------------------|---------|-------------|")
    for name, label in (("pooled", "api, pooled"), ("cold", "api, cold (no pool)"), ("py", "raw docker-py")):
        print(f"| {label:<19} | {throughput[name]:7.2f} | {throughput[name] / throughput['py']:10.2f}x |")
    print(f"\npool hit rate, concurrent: {hit_rate(pool_sequential, pool_concurrent)}\n")
    print("api cold p50 / docker-py p50 = " + verdict(median["cold"] / median["py"], 1.15, at_most=True))
    print("api cold throughput / docker-py = " + verdict(throughput["cold"] / throughput["py"], 0.85, at_most=False))
    print("api pooled p50 / docker run p50 = " + verdict(median["pooled"] / median["run"], 0.30, at_most=True))
    print("api pooled throughput / docker-py = "
          + verdict(throughput["pooled"] / throughput["py"], 0.90, at_most=False))


if __name__ == "__main__":
    main()
