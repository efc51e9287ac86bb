"""Accepting N executions: N single `POST /v1/executions` against one `POST /v1/executions/batch`.

    .venv/bin/python bench/batch.py [-n 100] [--rounds 10] [--concurrency 8]

Starts its own PostgreSQL and Redis and one `executor api` (no worker: nothing runs, so only
acceptance is timed and no task loads the machine), registers a busybox `cat` agent, and times
how long it takes to get N executions accepted (every answer a 202), along these paths:

  singles, 1 client    N requests one after another: the reference
  singles, C clients   N requests from C concurrent clients
  batch                one request of N items

each for two callers: the operator (no entitlement, no rate limit, no key), and a service on
behalf of a user with an Idempotency-Key per submission (a use of the user's entitlement, the
user's and the service's rate limits, the key: the marketplace's path). The paths run in turn
within each round, so that the machine's drift falls on all alike; a path's figure is its
median round. Absolute numbers vary between machines; the ratios are the result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.latency import backends, register_agent
from bench.throughput import start_process, stop_processes, wait_ready

USER = "bench-user"
UNLIMITED = {"EXECUTOR_USER_RATE_PER_S": "1000000", "EXECUTOR_USER_BURST": "1000000",
             "EXECUTOR_SERVICE_RATE_PER_S": "1000000", "EXECUTOR_SERVICE_BURST": "1000000",
             "EXECUTOR_MAX_LIVE_PER_USER": "0", "EXECUTOR_MAX_QUEUE_DEPTH": "10000000"}
CALLERS = ("operator", "service for a user, with keys")


def call(base_url: str, token: str, method: str, path: str, body: Any) -> Any:
    import urllib.request

    request = urllib.request.Request(base_url + path, data=json.dumps(body).encode(), method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def items(agent_id: str, caller: str, n: int) -> list[dict[str, Any]]:
    """N submissions as the caller sends them; a fresh key each for the service."""
    base: dict[str, Any] = {"agent_id": agent_id}
    if caller != "operator":
        base["on_behalf_of"] = USER
    return [{**base, "input": {"i": i}, **({"idempotency_key": uuid.uuid4().hex} if caller != "operator" else {})}
            for i in range(n)]


async def singles(session: aiohttp.ClientSession, base_url: str, token: str, bodies: list[dict[str, Any]],
                  concurrency: int) -> float:
    """Seconds until every body is accepted, one POST /v1/executions each from `concurrency` clients."""
    queue = list(reversed(bodies))

    async def client() -> None:
        while queue:
            body = dict(queue.pop())
            headers = {"Authorization": f"Bearer {token}"}
            key = body.pop("idempotency_key", None)
            if key is not None:
                headers["Idempotency-Key"] = key
            async with session.post(f"{base_url}/v1/executions", json=body, headers=headers) as response:
                await response.read()
                assert response.status == 202, (response.status, await response.text())

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - t0


async def batch(session: aiohttp.ClientSession, base_url: str, token: str, bodies: list[dict[str, Any]]) -> float:
    t0 = time.perf_counter()
    async with session.post(f"{base_url}/v1/executions/batch", json={"items": bodies},
                            headers={"Authorization": f"Bearer {token}"}) as response:
        answer = await response.json()
    elapsed = time.perf_counter() - t0
    assert response.status == 200, answer
    assert [item["status"] for item in answer["items"]] == [202] * len(bodies), answer["items"][:3]
    return elapsed


async def measure(base_url: str, tokens: dict[str, str], agent_id: str, n: int, rounds: int,
                  concurrency: int) -> dict[tuple[str, str], list[float]]:
    paths = ("singles, 1 client", f"singles, {concurrency} clients", "batch")
    seconds: dict[tuple[str, str], list[float]] = {(caller, path): [] for caller in CALLERS for path in paths}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        for round_number in range(rounds + 1):  # round 0 warms every path up and is not counted
            for caller in CALLERS:
                token = tokens[caller]
                timings = {
                    paths[0]: await singles(session, base_url, token, items(agent_id, caller, n), 1),
                    paths[1]: await singles(session, base_url, token, items(agent_id, caller, n), concurrency),
                    paths[2]: await batch(session, base_url, token, items(agent_id, caller, n)),
                }
                if round_number:
                    for path, elapsed in timings.items():
                        seconds[(caller, path)].append(elapsed)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100, help="executions accepted per path and round (<= 100)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with backends("executor-bench-batch-") as bench:
        env = {"EXECUTOR_DATABASE_URL": bench.postgres.create_database("bench_batch"),
               "EXECUTOR_REDIS_URL": bench.redis_url, "EXECUTOR_BOOTSTRAP_TOKEN": bench.token, **UNLIMITED}
        api = start_process("api", "api", bench.workdir, env, instance_id=f"bench-batch-{uuid.uuid4().hex[:8]}")
        try:
            wait_ready(api)
            agent_id = register_agent(api.url, bench.token, bench.image)
            service = call(api.url, bench.token, "POST", "/v1/tokens", {"role": "service", "subject": "bench-shop"})
            call(api.url, service["token"], "PUT", "/v1/entitlements", {"user": USER, "agent_id": agent_id})
            tokens = {CALLERS[0]: bench.token, CALLERS[1]: service["token"]}
            seconds = asyncio.run(measure(api.url, tokens, agent_id, args.n, args.rounds, args.concurrency))
        finally:
            stop_processes([api])

    print(f"\nexecutor batch benchmark: {args.n} executions accepted per path (every answer 202, nothing run), "
          f"median of {args.rounds} rounds\n")
    print("| caller                        | path                | ms for all | items/s | vs singles, 1 client |")
    print("|-------------------------------|---------------------|------------|---------|----------------------|")
    for caller in CALLERS:
        paths = [path for (who, path) in seconds if who == caller]
        reference = statistics.median(seconds[(caller, paths[0])])
        for path in paths:
            median = statistics.median(seconds[(caller, path)])
            print(f"| {caller:<29} | {path:<19} | {median * 1000:10.1f} | {args.n / median:7.0f} | "
                  f"{reference / median:19.1f}x |")


if __name__ == "__main__":
    main()
