"""WASM run latency through the API against raw `docker run` of the same agent image.

    .venv/bin/python bench/wasm.py [-n 30]

Starts PostgreSQL, Redis and one `executor serve` per OCI runtime (runc, and
runsc when the engine has it registered), registers the `shout` example (WAT)
in each, uploads its module (timed: check, compile, bake) and measures, in
rounds of 10 interleaved across the paths:

  api pooled   POST /v1/executions?wait=30, pre-started containers
  api cold     the same agent on a service with EXECUTOR_POOL_ENABLED=false
  docker run   `docker run --rm -i` of the baked agent image, same flags

Target (issue 5): pooled API p50 at most 0.30x raw cold `docker run`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import docker
import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from latency import percentile, start_service

from executor.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from runtimes import wasm
from runtimes.base import TASK_USER
from runtimes.images import IMAGES_DIR, build_images

EXAMPLE = IMAGES_DIR / "shout-wasm"
INPUT = {"text": "hello wide world"}
# gVisor counts its own sandbox threads against the pids limit: 16 is too few under runsc.
LIMITS = {"memory_mb": 64, "cpus": 0.5, "pids": 64, "timeout_s": 5}


def call(base_url: str, token: str, method: str, path: str, body: bytes, content_type: str) -> dict:
    request = urllib.request.Request(base_url + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def register_shout(base_url: str, token: str) -> tuple[str, str, float]:
    """(agent id, baked image id, seconds the upload took)."""
    body = {"name": f"bench-shout-{secrets.token_hex(3)}", "kind": "wasm", "limits": LIMITS, "fuel": 10**9,
            "input_schema": json.loads((EXAMPLE / "input.schema.json").read_text()),
            "output_schema": json.loads((EXAMPLE / "output.schema.json").read_text())}
    agent = call(base_url, token, "POST", "/v1/agents", json.dumps(body).encode(), "application/json")
    module = wasmtime.wat2wasm((EXAMPLE / "shout.wat").read_text())
    t0 = time.perf_counter()
    agent = call(base_url, token, "PUT", f"/v1/agents/{agent['id']}/module", module, "application/wasm")
    return agent["id"], agent["image_digest"], time.perf_counter() - t0


def raw_docker_run(image: str, runtime: str) -> float:
    args = ["docker", "run", "--rm", "-i", "--runtime", runtime, "--network", "none",
            "--memory", "64m", "--memory-swap", "64m", "--cpus", "0.5", "--pids-limit", "64", "--read-only",
            "--tmpfs", "/tmp:rw,noexec,nosuid,nodev,size=16m", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--user", TASK_USER, "--log-driver", "none", image,
            *wasm.run_arguments(fuel=10**9, timeout_s=5, max_memory_bytes=wasm.memory_cap_bytes(64))]
    t0 = time.perf_counter()
    done = subprocess.run(args, input=json.dumps(INPUT).encode(), capture_output=True, check=True)
    elapsed = time.perf_counter() - t0
    assert json.loads(done.stdout) == {"TEXT": "HELLO WIDE WORLD"}, done
    return elapsed


async def api_samples(base_url: str, token: str, agent_id: str, n: int) -> tuple[list[float], int]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        samples, pooled = [], 0
        for _ in range(n):
            t0 = time.perf_counter()
            async with session.post(f"{base_url}/v1/executions?wait=30", json={"agent_id": agent_id, "input": INPUT},
                                    headers={"Authorization": f"Bearer {token}"}) as response:
                record = await response.json()
            samples.append(time.perf_counter() - t0)
            assert record["status"] == "COMPLETED", record
            pooled += bool(record["pooled"])
        return samples, pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=30)
    args = parser.parse_args()
    client = docker.from_env()
    runtimes = ["runc"] + (["runsc"] if "runsc" in client.info().get("Runtimes", {}) else [])
    t0 = time.perf_counter()
    (runtime_image,) = build_images(client, ["wasm"], progress=lambda line: None)
    build_s = time.perf_counter() - t0
    size = client.images.get(runtime_image.image_id).attrs["Size"]

    workdir = Path(tempfile.mkdtemp(prefix="executor-bench-wasm-"))
    workdir.chmod(0o755)
    postgres = EmbeddedPostgres(workdir / "pg", port=free_port())
    redis_server = EmbeddedRedis(workdir / "redis", port=free_port())
    processes, results, uploads = [], {}, {}
    try:
        postgres.start()
        redis_url = redis_server.start()
        token = "exe_bench_" + secrets.token_urlsafe(16)
        services = {}
        for runtime in runtimes:
            for pool in (True, False):
                name = f"{runtime}-{'pooled' if pool else 'cold'}"
                process, base_url = start_service(
                    postgres.create_database(f"bench_{name.replace('-', '_')}"),
                    redis_url.rsplit("/", 1)[0] + f"/{len(services)}", workdir / name, token, pool,
                    extra={"EXECUTOR_OCI_RUNTIME": runtime},
                )
                processes.append(process)
                agent_id, image, uploads[name] = register_shout(base_url, token)
                services[name] = (base_url, agent_id, image)
        for name, (base_url, agent_id, _image) in services.items():
            asyncio.run(api_samples(base_url, token, agent_id, 3))  # warm up
            results[name] = ([], 0)
        for runtime in runtimes:
            raw_docker_run(services[f"{runtime}-cold"][2], runtime)
            results[f"{runtime}-docker-run"] = ([], 0)
        for _ in range(max(1, args.n // 10)):
            for name, (base_url, agent_id, _) in services.items():
                samples, pooled = asyncio.run(api_samples(base_url, token, agent_id, 10))
                results[name] = (results[name][0] + samples, results[name][1] + pooled)
                time.sleep(1)
            for runtime in runtimes:
                image = services[f"{runtime}-cold"][2]
                results[f"{runtime}-docker-run"][0].extend(raw_docker_run(image, runtime) for _ in range(10))
    finally:
        for process in processes:
            process.terminate()
            process.wait(60)
        client.close()
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nWASM agent `shout` (WAT), {args.n} sequential runs per path\n")
    print(f"runtime image executor/wasm: {size / 1e6:.2f} MB; build {build_s:.1f} s "
          f"({'cached' if runtime_image.cached else 'cold'}); module upload (check + compile + bake): "
          + ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in uploads.items()) + "\n")
    print("| path                  | p50 ms | p95 ms | pooled hits | p50 / docker run (same runtime) |")
    print("|-----------------------|--------|--------|-------------|------|")
    for name, (samples, pooled) in results.items():
        runtime = name.split("-")[0]
        reference = statistics.median(results[f"{runtime}-docker-run"][0])
        p50 = statistics.median(samples)
        hits = f"{pooled}/{len(samples)}" if "docker-run" not in name else "-"
        print(f"| {name:<21} | {p50 * 1000:6.1f} | {percentile(samples, 95) * 1000:6.1f} | {hits:>11} "
              f"| {p50 / reference:5.2f}x |")
    for runtime in runtimes:
        ratio = (statistics.median(results[f"{runtime}-pooled"][0])
                 / statistics.median(results[f"{runtime}-docker-run"][0]))
        print(f"\n{runtime}: pooled API p50 / raw cold docker run p50 = {ratio:.2f} (target <= 0.30): "
              f"{'met' if ratio <= 0.30 else 'NOT met'}")
    if "runsc" not in runtimes:
        print("\nrunsc: not registered with this engine, not measured")


if __name__ == "__main__":
    main()
