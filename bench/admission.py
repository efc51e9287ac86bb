"""What the marketplace checks add to accepting an execution.

Starts its own PostgreSQL and Redis and one `executor serve`, registers a busybox `cat`
agent, then measures the latency of `POST /v1/executions` (no wait: the 202) along four
paths, interleaved in rounds so drift in the machine hits them alike:

  operator           the reference: no entitlement, no rate limit, no key
  user               the user's own token: GCRA rate limit in Redis, live cap, entitlement use
  service + key      a service on behalf of the user, with a fresh Idempotency-Key each time
  replay             the same request and key again: answered from the stored key

The worker runs one task at a time, so the accepted executions queue up behind it and load
the machine alike for every path. Run: .venv/bin/python bench/admission.py [-n 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.latency import backends, percentile, register_agent, serving

PATHS = ("operator", "user", "service + key", "replay")


def call(base_url: str, token: str, method: str, path: str, body: Any) -> Any:
    request = urllib.request.Request(base_url + path, data=json.dumps(body).encode(), method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


async def accept(session: aiohttp.ClientSession, base_url: str, token: str, body: dict[str, Any],
                 key: str | None = None) -> tuple[float, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    t0 = time.perf_counter()
    async with session.post(f"{base_url}/v1/executions", json=body, headers=headers) as response:
        await response.read()
        elapsed = time.perf_counter() - t0
        assert response.status == 202, (response.status, await response.text())
        return elapsed, dict(response.headers)


async def measure(base_url: str, tokens: dict[str, str], agent_id: str, user: str, n: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {path: [] for path in PATHS}
    plain = {"agent_id": agent_id, "input": {"text": "hello"}}
    on_behalf = {**plain, "on_behalf_of": user}
    async with aiohttp.ClientSession() as session:
        for path in PATHS[:3]:  # warm up
            await accept(session, base_url, tokens[path], plain if path != "service + key" else on_behalf,
                         secrets.token_hex(8) if path == "service + key" else None)
        for _ in range(n // 10 or 1):
            for _ in range(10):
                key = secrets.token_hex(8)
                samples["operator"].append((await accept(session, base_url, tokens["operator"], plain))[0])
                samples["user"].append((await accept(session, base_url, tokens["user"], plain))[0])
                elapsed, _ = await accept(session, base_url, tokens["service + key"], on_behalf, key)
                samples["service + key"].append(elapsed)
                elapsed, headers = await accept(session, base_url, tokens["service + key"], on_behalf, key)
                assert headers.get("Idempotent-Replayed") == "true"
                samples["replay"].append(elapsed)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=400, help="requests per path")
    args = parser.parse_args()
    unlimited = {"EXECUTOR_WORKER_CONCURRENCY": "1", "EXECUTOR_USER_RATE_PER_S": "100000",
                 "EXECUTOR_USER_BURST": "100000", "EXECUTOR_SERVICE_RATE_PER_S": "100000",
                 "EXECUTOR_SERVICE_BURST": "100000", "EXECUTOR_MAX_LIVE_PER_USER": "100000"}
    with backends("executor-bench-admission-") as bench, serving(
            bench.postgres.create_database("bench_admission"), bench.redis_url, bench.workdir / "service",
            bench.token, pool=False, extra=unlimited) as base_url:
        token = bench.token
        agent_id = register_agent(base_url, token, bench.image)
        tokens = {"operator": token}
        for role, subject in (("user", "bench-user"), ("service", "bench-shop")):
            tokens[role] = call(base_url, token, "POST", "/v1/tokens", {"role": role, "subject": subject})["token"]
        tokens["service + key"] = tokens.pop("service")
        call(base_url, tokens["service + key"], "PUT", "/v1/entitlements", {"user": "bench-user", "agent_id": agent_id})
        samples = asyncio.run(measure(base_url, tokens, agent_id, "bench-user", args.n))

    reference = statistics.median(samples["operator"]) * 1000
    print(f"\nexecutor admission benchmark: {len(samples['operator'])} accepted submissions per path "
          "(POST /v1/executions → 202), interleaved\n")
    print("| path           | p50 ms | p95 ms | p99 ms | p50 − operator ms |")
    print("|----------------|--------|--------|--------|-------------------|")
    for path in PATHS:
        values = samples[path]
        p50 = statistics.median(values) * 1000
        print(f"| {path:<14} | {p50:6.2f} | {percentile(values, 95) * 1000:6.2f} | "
              f"{percentile(values, 99) * 1000:6.2f} | {p50 - reference:+17.2f} |")


if __name__ == "__main__":
    main()
