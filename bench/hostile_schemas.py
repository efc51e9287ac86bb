"""Hostile schemas: does the service keep answering while it checks documents built to be slow?

Two parts, each against a reference measured in the same run:

1. In process (executor.schemas): the cost of checking a small typical input inline vs on the
   validation threads (the hop), a 1.3 MB input with executor's validator vs stock jsonschema
   (the cost of the deadline and RE2), and `^(a+)+$` on "aaa…a!" with RE2 vs Python's re.
2. Through HTTP (its own PostgreSQL, Redis and `executor serve`): `/healthz` latency (p50, p95,
   max) on the idle service, then while clients keep submitting
   - inputs with a catastrophic pattern (`^(a+)+$` vs "a"*40 + "!": 422 input_invalid),
   - outputs with it (a `cat` agent whose output schema has the pattern: output_invalid),
   - inputs that exhaust the validation budget (anyOf over recursive refs, 40 levels deep).

Run: .venv/bin/python bench/hostile_schemas.py [-n 300] [--clients 8]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import secrets
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.latency import backends, percentile, serving
from executor.schemas import violations, violations_off_loop

CATASTROPHIC = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
EXPONENTIAL = {"$ref": "#/$defs/n", "$defs": {"n": {"anyOf": [
    {"type": "array", "items": {"$ref": "#/$defs/n"}},
    {"type": "array", "items": {"$ref": "#/$defs/n"}},
    {"type": "integer"},
]}}}
SMALL_SCHEMA = {"type": "object", "required": ["text"],
                "properties": {"text": {"type": "string", "maxLength": 10000}, "n": {"type": "integer"}}}
BIG_SCHEMA = {"type": "object", "properties": {"rows": {"type": "array", "items": {
    "type": "object", "required": ["id", "name"],
    "properties": {"id": {"type": "integer"}, "name": {"type": "string", "pattern": "^[a-z]+[0-9]*$"},
                   "tags": {"type": "array", "items": {"type": "string"}}}}}}}


def _median_us(fn: Any, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


async def _off_loop_us(n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await violations_off_loop(SMALL_SCHEMA, {"text": "hello", "n": 3}, budget_ms=1000)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def in_process() -> None:
    small = {"text": "hello", "n": 3}
    big = {"rows": [{"id": i, "name": f"name{i}", "tags": ["a", "b"]} for i in range(24000)]}
    inline = _median_us(lambda: violations(SMALL_SCHEMA, small), 2000)
    hop = asyncio.run(_off_loop_us(2000))
    stock_small = _median_us(lambda: list(Draft202012Validator(SMALL_SCHEMA).iter_errors(small)), 2000)
    ours_big = _median_us(lambda: violations(BIG_SCHEMA, big, budget_ms=60_000), 5) / 1000
    stock_big = _median_us(lambda: list(Draft202012Validator(BIG_SCHEMA).iter_errors(big)), 5) / 1000
    print("\n## In process\n")
    print("| check | executor | reference | reference is |")
    print("|---|---|---|---|")
    print(f"| small input (2 fields), inline | {inline:.0f} µs | {stock_small:.0f} µs | stock jsonschema |")
    print(f"| small input, on the validation threads | {hop:.0f} µs | {inline:.0f} µs | inline (hop "
          f"{hop - inline:+.0f} µs) |")
    print(f"| 1.3 MB input (24 000 records) | {ours_big:.0f} ms | {stock_big:.0f} ms | stock jsonschema |")
    for length in (20, 22, 24):
        text = "a" * length + "!"
        t0 = time.perf_counter()
        re.search("^(a+)+$", text)
        python_ms = (time.perf_counter() - t0) * 1000
        ours = _median_us(lambda text=text: violations({"pattern": "^(a+)+$"}, text), 50)
        print(f"| `^(a+)+$` vs {length} a + '!' | {ours:.0f} µs (RE2) | {python_ms:.0f} ms | Python re |")
    ours = _median_us(lambda: violations({"pattern": "^(a+)+$"}, "a" * 1_000_000 + "!"), 5) / 1000
    print(f"| `^(a+)+$` vs 1 000 000 a + '!' | {ours:.1f} ms (RE2) | never (2^1000000 steps) | "
          "Python re (doubles per character) |")


async def _healthz(session: aiohttp.ClientSession, base_url: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.get(base_url + "/healthz") as response:
            await response.read()
            assert response.status == 200, response.status
        samples.append(time.perf_counter() - t0)
        await asyncio.sleep(0.01)
    return samples


async def _flood(session: aiohttp.ClientSession, base_url: str, token: str, body: dict[str, Any],
                 stop: asyncio.Event, answers: Counter[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        async with session.post(base_url + "/v1/executions?wait=30", json=body, headers=headers) as response:
            record = await response.json()
            answers[str(response.status) if response.status >= 400 else
                    f"{record['status']} {(record.get('error') or {}).get('type', '')}".strip()] += 1


async def over_http(base_url: str, token: str, agents: dict[str, str], n: int, clients: int) -> None:
    hostile = {
        "catastrophic inputs": ({"agent_id": agents["input"], "input": {"s": "a" * 40 + "!"}}, clients),
        "catastrophic outputs": ({"agent_id": agents["output"], "input": {"s": "a" * 40 + "!"}}, 2),
        "budget-exhausting inputs": ({"agent_id": agents["deep"], "input": {"d": _nested(40)}}, clients),
        # Parsing and checking 1.9 MB of small containers takes ~0.5 s: off the loop past 8 KiB.
        "1.9 MB bodies of nested arrays": ({"agent_id": agents["input"], "input": {"pad": [[[0]]] * 240_000}}, 4),
    }
    rows = []
    async with aiohttp.ClientSession() as session:
        await _healthz(session, base_url, 20)  # warm up
        rows.append(("idle (reference)", await _healthz(session, base_url, n), Counter(), 0.0))
        for name, (body, count) in hostile.items():
            stop, answers = asyncio.Event(), Counter[str]()
            flood = [asyncio.create_task(_flood(session, base_url, token, body, stop, answers)) for _ in range(count)]
            await asyncio.sleep(1.0)  # let the flood build up
            t0 = time.perf_counter()
            samples = await _healthz(session, base_url, n)
            elapsed = time.perf_counter() - t0
            stop.set()
            await asyncio.gather(*flood)
            rows.append((f"{name} ({count} clients)", samples, answers, elapsed))
    reference = statistics.median(rows[0][1]) * 1000
    print(f"\n## /healthz latency over HTTP ({n} sequential calls per row)\n")
    print("| while | p50 ms | p95 ms | max ms | p50 − idle ms | submissions answered |")
    print("|---|---|---|---|---|---|")
    for name, samples, answers, _elapsed in rows:
        p50 = statistics.median(samples) * 1000
        done = ", ".join(f"{count} × {what}" for what, count in answers.most_common()) or "—"
        print(f"| {name} | {p50:.2f} | {percentile(samples, 95) * 1000:.2f} | {max(samples) * 1000:.2f} | "
              f"{p50 - reference:+.2f} | {done} |")


def _nested(depth: int) -> Any:
    doc: Any = "x"
    for _ in range(depth):
        doc = [doc]
    return doc


def _register(base_url: str, token: str, image: str, input_schema: Any, output_schema: Any) -> str:
    import urllib.request

    body = json.dumps({"name": f"bench-hostile-{secrets.token_hex(3)}", "image": image, "command": ["cat"],
                       "input_schema": input_schema, "output_schema": output_schema}).encode()
    request = urllib.request.Request(base_url + "/v1/agents", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300, help="/healthz calls per row")
    parser.add_argument("--clients", type=int, default=8, help="concurrent hostile clients")
    args = parser.parse_args()
    in_process()
    with backends("executor-bench-hostile-") as bench, serving(
            bench.postgres.create_database("bench_hostile"), bench.redis_url, bench.workdir / "service",
            bench.token, pool=True) as base_url:
        register = functools.partial(_register, base_url, bench.token, bench.image)
        agents = {
            "input": register(CATASTROPHIC, True),
            "output": register({"type": "object"}, CATASTROPHIC),
            "deep": register({"type": "object", "properties": {"d": {"$ref": "#/$defs/n"}},
                              "$defs": EXPONENTIAL["$defs"]}, True),
        }
        asyncio.run(over_http(base_url, bench.token, agents, args.n, args.clients))


if __name__ == "__main__":
    main()
