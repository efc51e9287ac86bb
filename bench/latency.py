"""Latency and throughput of executor against raw Docker, measured in one run.

    .venv/bin/python bench/latency.py [-n 40] [--concurrency 8] [--total 96]

It starts its own PostgreSQL, Redis and `executor serve`, registers a trivial
agent (`cat` on the busybox image) and compares, on the same image with the
same hardening flags:

  api        POST /v1/executions?wait=30 through the whole service
  docker-run `docker run --rm -i` with the same flags
  docker-py  create / attach / start / write stdin / read / wait / remove

then sustained throughput with C concurrent clients: the API against raw
docker-py at the same concurrency. Absolute times vary between machines;
the ratios are the result.
"""

from __future__ import annotations

import argparse
import asyncio
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import docker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from executor.embedded import EmbeddedPostgres, EmbeddedRedis, free_port  # noqa: E402
from executor.settings import Limits  # noqa: E402
from runtimes.base import TASK_USER, TaskSpec  # noqa: E402
from runtimes.container import hardened_host_config  # noqa: E402
from runtimes.engine import DockerEngine  # noqa: E402
from runtimes.images import build_images  # noqa: E402

LIMITS = Limits(memory_mb=64, cpus=1.0, pids=32, timeout_s=10.0)
INPUT = {"text": "hello world"}
PAYLOAD = json.dumps(INPUT, separators=(",", ":")).encode()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


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


def raw_docker_py(engine: DockerEngine, image: str) -> float:
    """The cold path a careful docker-py user writes: one client, attach before start."""
    api = engine.api
    spec = TaskSpec("bench", image, ["cat"], PAYLOAD, LIMITS, 1 << 20, 1 << 20, 16)
    t0 = time.perf_counter()
    container = api.create_container(image, ["cat"], user=TASK_USER, stdin_open=True, network_disabled=True,
                                     host_config=hardened_host_config(engine, spec))
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
    api.remove_container(container["Id"], force=True)
    elapsed = time.perf_counter() - t0
    assert received.endswith(PAYLOAD)
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


def start_service(database_url: str, redis_url: str, state_dir: Path, token: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_")}
    env.update(EXECUTOR_DATABASE_URL=database_url, EXECUTOR_REDIS_URL=redis_url, EXECUTOR_STATE_DIR=str(state_dir),
               EXECUTOR_PORT=str(port), EXECUTOR_BOOTSTRAP_TOKEN=token)
    log = open(state_dir / "service.log", "wb")
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


def register_agent(base_url: str, token: str, image: str) -> str:
    body = json.dumps({"name": f"bench-cat-{secrets.token_hex(3)}", "image": image, "command": ["cat"],
                       "input_schema": {"type": "object"}, "output_schema": {"type": "object"},
                       "limits": LIMITS.to_dict()}).encode()
    request = urllib.request.Request(base_url + "/v1/agents", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())["id"]


def row(name: str, samples: list[float], reference: float) -> str:
    p50, p95 = statistics.median(samples) * 1000, percentile(samples, 95) * 1000
    return f"| {name:<22} | {p50:8.1f} | {p95:8.1f} | {max(samples) * 1000:8.1f} | {p50 / reference:6.2f}x |"


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
    engine = DockerEngine(threads=max(32, args.concurrency * 2))
    process = None
    try:
        database_url, redis_url = postgres.start(), redis_server.start()
        token = "exe_bench_" + secrets.token_urlsafe(16)
        process, base_url = start_service(database_url, redis_url, workdir, token)
        agent_id = register_agent(base_url, token, image)

        for _ in range(3):  # warm up every path once
            raw_docker_run(image), raw_docker_py(engine, image)
        asyncio.run(api_sequential(base_url, token, agent_id, 3))

        # Interleave the paths in rounds so drift in the machine hits them alike.
        api_s: list[float] = []
        run_s: list[float] = []
        py_s: list[float] = []
        for _ in range(args.n // 10 or 1):
            api_s += asyncio.run(api_sequential(base_url, token, agent_id, 10))
            run_s += [raw_docker_run(image) for _ in range(10)]
            py_s += [raw_docker_py(engine, image) for _ in range(10)]
        api_tp = asyncio.run(api_throughput(base_url, token, agent_id, args.concurrency, args.total))
        py_tp = docker_py_throughput(engine, image, args.concurrency, args.total)
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
        engine.close()
        client.close()
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    reference = statistics.median(py_s) * 1000
    print(f"\nexecutor latency benchmark: {len(api_s)} sequential runs per path, busybox `cat`, same hardening\n")
    print("| path                   | p50 ms   | p95 ms   | max ms   | p50 vs docker-py |")
    print("|------------------------|----------|----------|----------|--------|")
    print(row("api (wait)", api_s, reference))
    print(row("raw docker run --rm -i", run_s, reference))
    print(row("raw docker-py", py_s, reference))
    api_ratio = statistics.median(api_s) * 1000 / reference
    print(f"\nthroughput at {args.concurrency} concurrent clients, {args.total} executions per path:")
    print(f"| api        | {api_tp:6.2f} exec/s |\n| docker-py  | {py_tp:6.2f} exec/s |")
    print(f"\napi p50 / docker-py p50 = {api_ratio:.2f} (target <= 1.15): {'met' if api_ratio <= 1.15 else 'NOT met'}")
    tp_ratio = api_tp / py_tp
    print(f"api throughput / docker-py = {tp_ratio:.2f} (target >= 0.85): {'met' if tp_ratio >= 0.85 else 'NOT met'}")


if __name__ == "__main__":
    main()
