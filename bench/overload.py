"""Graceful under overload: an open-loop arrival rate from half to three times the capacity.

    .venv/bin/python bench/overload.py --step-seconds 180   # the full run (about 20 minutes)
    .venv/bin/python bench/overload.py                      # 60 s steps
    .venv/bin/python bench/overload.py --quick              # 15 s steps, a short capacity measure

It starts its own PostgreSQL and Redis, one `executor api` and one `executor worker`
(WORKER_CONCURRENCY tasks at once, pre-started containers on, rate limits off: what is
refused is refused by the queue's bounds), registers a trivial agent (`cat` on the busybox
image, as bench/latency.py does) and then, in one run:

1. **capacity**: closed-loop maximum throughput, CLIENTS clients each submitting
   `POST /v1/executions?wait=30` again as soon as its last answered, for CAPACITY seconds;
2. **steps**: for each factor of --factors (0.5x ... 3x that capacity), STEP seconds of
   open-loop arrivals at factor x capacity per second (Poisson by default, `--fixed`: evenly
   spaced): each request is sent at its scheduled time whether or not earlier ones were
   answered, so a slow service cannot slow the load down (the largest lag behind the schedule
   is printed). The steps follow each other without a pause;
3. **drain**: every accepted execution must end final (lost: accepted, never final).

Per step: offered rate (sent per second), accepted/s (201 or 202), goodput (201 COMPLETED,
that is done within the 30 s wait, per second), refusals by status (429, 503) and whether each
carried Retry-After, p50/p95/p99 latency of accepted work (a 201: the client's time from send
to answer; a 202: the record's finished_at - created_at, which is at least the wait), the
stream's largest length, and the RSS of the api and worker processes, PostgreSQL (the sum of
its processes' private memory: its fixed shared buffer pool left out) and Redis, read from /proc at the step's
start and end. Each arrival is of a priority class drawn from --mix (by default 20% high, 50%
normal, 30% low): a second table gives each class's goodput, refusals and latency per step (the
low class is shed first, the high class last: executor/executions/shedding.py). Then a plot of
goodput and p99 against offered load, docs/benchmarks/overload.png (matplotlib:
`pip install -e '.[bench]'`).

Targets (issue 20): excess shed with 429/503 and Retry-After; goodput at 2x >= 90% of the
peak goodput; p99 of accepted work within EXECUTOR_MAX_QUEUE_WAIT_S + CAPACITY_P99 + 1 s (the
bound on queue wait, each class's share of it: high 2x, normal 1x, low 0.5x; the p99 of a task
at capacity; and a second of staleness and slack), per class; 0
lost; memory flat (each process's RSS at the end of the last step within +20% or +32 MB of its
end of the first overload step).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import docker
import redis.asyncio as aioredis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from executor.embedded import EmbeddedPostgres, EmbeddedRedis, free_port  # noqa: E402
from executor.executions.shedding import CLASS_BOUND  # noqa: E402
from runtimes.images import build_images  # noqa: E402

LIMITS = {"memory_mb": 64, "cpus": 1.0, "pids": 32, "timeout_s": 10.0}
INPUT = {"text": "hello world"}
WAIT_S = 30
FINAL = ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED")
PLOT = REPO / "docs" / "benchmarks" / "overload.png"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- processes and memory --------------------------------------------------------------------

@dataclass
class Service:
    role: str
    url: str
    log_path: Path
    popen: subprocess.Popen[bytes]


def start(role: str, workdir: Path, env_extra: dict[str, str]) -> Service:
    state_dir = workdir / role
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_")}
    env.update(env_extra, EXECUTOR_STATE_DIR=str(state_dir), EXECUTOR_PORT=str(port),
               EXECUTOR_INSTANCE_ID=f"bench-overload-{role}-{secrets.token_hex(3)}")
    log_path = state_dir / f"{role}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen([sys.executable, "-m", "executor", role], env=env, cwd=REPO, stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    service = Service(role, f"http://127.0.0.1:{port}", log_path, popen)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{role} exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(service.url + "/readyz", timeout=2):
                return service
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)
    raise RuntimeError(f"{role} not ready: {log_path.read_text(errors='replace')[-2000:]}")


def stop(services: list[Service]) -> None:
    for service in services:
        if service.popen.poll() is None:
            service.popen.terminate()
    for service in services:
        try:
            service.popen.wait(120)
        except subprocess.TimeoutExpired:
            service.popen.kill()
            service.popen.wait()


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _private_kb(pid: int) -> int:
    """A process's own memory, what no other process maps: PostgreSQL's shared buffer pool (a
    fixed shared_buffers, whose pages count in each process's RSS and PSS as they are first
    touched, so that those grow for minutes under a new load without any leak) is left out."""
    try:
        return sum(int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                   if line.startswith(("Private_Clean:", "Private_Dirty:")))
    except OSError:
        return _status_kb(pid, "VmRSS")


def _children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(proc.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


@dataclass
class Memory:
    api: int
    worker: int
    postgres: int
    redis: int
    api_cpu_s: float = 0.0  # utime + stime so far
    worker_cpu_s: float = 0.0


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(api: Service, worker: Service, postmaster: int, redis_pid: int) -> Memory:
    """RSS in MB: the api and the worker; PostgreSQL's processes' private memory summed (its shared
    buffer pool left out); Redis's RSS."""
    pg = sum(_private_kb(pid) for pid in [postmaster, *_children(postmaster)])
    return Memory(_status_kb(api.popen.pid, "VmRSS") // 1024, _status_kb(worker.popen.pid, "VmRSS") // 1024,
                  pg // 1024, _status_kb(redis_pid, "VmRSS") // 1024, cpu_s(api.popen.pid), cpu_s(worker.popen.pid))


# --- the load ----------------------------------------------------------------------------------

@dataclass
class Answer:
    sent_at: float  # monotonic
    status: int  # 0: no HTTP answer
    seconds: float
    execution_id: str | None = None
    completed: bool = False  # a 201 COMPLETED
    retry_after: bool = False
    priority: str = "normal"


async def submit(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Answer:
    sent = time.monotonic()
    try:
        async with session.post(url, json=body) as response:
            payload = await response.json(content_type=None)
            answer = Answer(sent, response.status, time.monotonic() - sent, priority=body.get("priority", "normal"))
            if response.status in (201, 202):
                answer.execution_id = payload["id"]
                answer.completed = response.status == 201 and payload["status"] == "COMPLETED"
            answer.retry_after = "Retry-After" in response.headers
            return answer
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return Answer(sent, 0, time.monotonic() - sent)


async def closed_loop(session: aiohttp.ClientSession, url: str, body: dict[str, Any], clients: int,
                      seconds: float) -> list[Answer]:
    answers: list[Answer] = []
    end = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < end:
            answers.append(await submit(session, url, body))

    await asyncio.gather(*(client() for _ in range(clients)))
    return answers


@dataclass
class Step:
    factor: float
    rate: float
    seconds: float
    answers: list[Answer] = field(default_factory=list)
    tasks: list[asyncio.Task[Answer]] = field(default_factory=list)
    max_lag_s: float = 0.0
    max_depth: int = 0
    memory_start: Memory | None = None
    memory_end: Memory | None = None
    latencies: list[float] = field(default_factory=list)
    by_class: dict[str, list[float]] = field(default_factory=dict)  # the latencies of each priority class


async def open_loop(session: aiohttp.ClientSession, url: str, body: dict[str, Any], step: Step,
                    poisson: bool, rng: random.Random, mix: dict[str, float]) -> None:
    """Sends at the scheduled times, never waiting for an answer; the answers are gathered later.
    Each arrival is of a priority class drawn from `mix` (class: share)."""
    t0 = time.monotonic()
    at = 0.0
    while True:
        at += rng.expovariate(step.rate) if poisson else 1 / step.rate
        if at >= step.seconds:
            break
        delay = t0 + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            step.max_lag_s = max(step.max_lag_s, -delay)
        priority = rng.choices(list(mix), weights=list(mix.values()))[0]
        step.tasks.append(asyncio.create_task(submit(session, url, {**body, "priority": priority})))
    rest = t0 + step.seconds - time.monotonic()
    if rest > 0:
        await asyncio.sleep(rest)


async def sample_depth(redis_url: str, steps: list[Step], current: list[int], stop_event: asyncio.Event) -> None:
    client = aioredis.from_url(redis_url)
    try:
        while not stop_event.is_set():
            depth = int(await client.xlen("executor:jobs"))
            step = steps[current[0]]
            step.max_depth = max(step.max_depth, depth)
            await asyncio.sleep(0.25)
    finally:
        await client.aclose()


# --- the run -----------------------------------------------------------------------------------

def register_agent(base_url: str, token: str, image: str) -> str:
    body = json.dumps({"name": f"bench-cat-{secrets.token_hex(3)}", "image": image, "command": ["cat"],
                       "input_schema": {"type": "object"}, "output_schema": {"type": "object"},
                       "limits": LIMITS}).encode()
    request = urllib.request.Request(base_url + "/v1/agents", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return str(json.loads(response.read())["id"])


async def drain(dsn: str, ids: list[str], timeout_s: float) -> tuple[int, dict[str, float]]:
    """Waits until every accepted execution is final (or timeout_s): the count never final, and
    each final one's finished_at - created_at."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = await conn.fetch("SELECT id::text, status, extract(epoch FROM finished_at - created_at) AS s "
                                    "FROM executions WHERE id = ANY($1::uuid[])", ids)
            final = {r["id"]: float(r["s"]) for r in rows if r["status"] in FINAL}
            if len(final) == len(set(ids)) or time.monotonic() > deadline:
                return len(set(ids)) - len(final), final
            await asyncio.sleep(1)
    finally:
        await conn.close()


async def run(args: argparse.Namespace, api: Service, worker: Service, token: str, agent_id: str, dsn: str,
              redis_url: str, pids: tuple[int, int]) -> tuple[float, float, list[Step], int]:
    url = f"{api.url}/v1/executions?wait={WAIT_S}"
    body = {"agent_id": agent_id, "input": INPUT}
    timeout = aiohttp.ClientTimeout(total=WAIT_S + 60)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     headers={"Authorization": f"Bearer {token}"}) as session:
        await closed_loop(session, url, body, args.clients, min(5.0, args.capacity_seconds / 2))  # warm up
        t0 = time.monotonic()
        answers = await closed_loop(session, url, body, args.clients, args.capacity_seconds)
        elapsed = time.monotonic() - t0
        done = [a for a in answers if a.completed]
        capacity = len(done) / elapsed
        capacity_p99 = percentile([a.seconds for a in done], 99)
        refused = len(answers) - len(done)
        print(f"capacity: {capacity:.1f} exec/s ({len(done)} in {elapsed:.1f} s from {args.clients} closed-loop "
              f"clients, p99 {capacity_p99 * 1000:.0f} ms, {refused} not completed)", flush=True)
        await asyncio.sleep(3)  # let the queue empty

        rng = random.Random(args.seed)
        steps = [Step(f, f * capacity, args.step_seconds) for f in args.factors]
        current = [0]
        stop_event = asyncio.Event()
        sampler = asyncio.create_task(sample_depth(redis_url, steps, current, stop_event))
        for index, step in enumerate(steps):
            current[0] = index
            step.memory_start = memory(api, worker, *pids)
            print(f"step {step.factor}x: {step.rate:.1f}/s for {step.seconds:.0f} s", flush=True)
            await open_loop(session, url, body, step, not args.fixed, rng, args.mix)
            step.memory_end = memory(api, worker, *pids)
        stop_event.set()
        await sampler
        for step in steps:
            step.answers = list(await asyncio.gather(*step.tasks))
    accepted = [a.execution_id for s in steps for a in s.answers if a.execution_id]
    lost, server_s = await drain(dsn, accepted, args.drain_seconds)
    for step in steps:
        for a in step.answers:
            latency = None
            if a.status == 201:
                latency = a.seconds
            elif a.status == 202 and a.execution_id in server_s:
                latency = max(server_s[a.execution_id], WAIT_S)
            if latency is not None:
                step.latencies.append(latency)
                step.by_class.setdefault(a.priority, []).append(latency)
    return capacity, capacity_p99, steps, lost


def report(args: argparse.Namespace, capacity: float, capacity_p99: float, steps: list[Step], lost: int) -> bool:
    print(f"\noverload: capacity {capacity:.1f} exec/s; {len(steps)} steps of {args.step_seconds:.0f} s, "
          f"{'evenly spaced' if args.fixed else 'Poisson'} arrivals, POST ?wait={WAIT_S}, "
          f"EXECUTOR_MAX_QUEUE_WAIT_S={args.max_queue_wait}\n")
    print("| load | offered/s | accepted/s | goodput/s | 429 | 503 | Retry-After | other | p50 ms | p95 ms "
          "| p99 ms | max queue | lag ms | api CPU | worker CPU | api MB | worker MB | PG MB | Redis MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    goodputs = []
    for s in steps:
        sent = len(s.answers)
        accepted = sum(1 for a in s.answers if a.status in (201, 202))
        good = sum(1 for a in s.answers if a.completed)
        shed = [a for a in s.answers if a.status in (429, 503)]
        other = sent - accepted - len(shed)
        goodputs.append(good / s.seconds)
        every = ("all" if all(a.retry_after for a in shed) else
                 f"{sum(a.retry_after for a in shed)}/{len(shed)}") if shed else "-"
        m0, m1 = s.memory_start, s.memory_end
        assert m0 is not None and m1 is not None

        def mem(name: str, m0: Memory = m0, m1: Memory = m1) -> str:
            return f"{getattr(m0, name)}→{getattr(m1, name)}"

        p = [percentile(s.latencies, q) * 1000 for q in (50, 95, 99)]
        print(f"| {s.factor:g}x | {sent / s.seconds:.1f} | {accepted / s.seconds:.1f} | {good / s.seconds:.1f} "
              f"| {sum(a.status == 429 for a in shed)} | {sum(a.status == 503 for a in shed)} | {every} | {other} "
              f"| {p[0]:.0f} | {p[1]:.0f} | {p[2]:.0f} | {s.max_depth} | {s.max_lag_s * 1000:.0f} "
              f"| {100 * (m1.api_cpu_s - m0.api_cpu_s) / s.seconds:.0f}% "
              f"| {100 * (m1.worker_cpu_s - m0.worker_cpu_s) / s.seconds:.0f}% "
              f"| {mem('api')} | {mem('worker')} | {mem('postgres')} | {mem('redis')} |")
    print(f"\nlost (accepted, never final after the drain): {lost}")
    print("\nper priority class (the arrivals' mix: "
          + ", ".join(f"{name} {share:g}" for name, share in args.mix.items()) + "):\n")
    print("| load | class | offered/s | goodput/s | goodput / offered | shed (503) | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for s in steps:
        for name in args.mix:
            mine = [a for a in s.answers if a.priority == name]
            good = sum(a.completed for a in mine)
            lat = s.by_class.get(name, [])
            print(f"| {s.factor:g}x | {name} | {len(mine) / s.seconds:.1f} | {good / s.seconds:.1f} "
                  f"| {good / len(mine) if mine else float('nan'):.2f} | {sum(a.status == 503 for a in mine)} "
                  f"| {percentile(lat, 50) * 1000:.0f} | {percentile(lat, 99) * 1000:.0f} |")

    verdicts = []
    peak = max(goodputs)
    at2 = next((g for s, g in zip(steps, goodputs, strict=True) if s.factor == 2.0), None)
    if at2 is not None:
        verdicts.append((f"goodput at 2x / peak = {at2 / peak:.2f} (target >= 0.90)", at2 >= 0.9 * peak))
    shed_all = [a for s in steps for a in s.answers if a.status in (429, 503)]
    over = [s for s in steps if s.factor > 1.0]
    verdicts.append((f"refusals past capacity carry Retry-After: {sum(a.retry_after for a in shed_all)}/"
                     f"{len(shed_all)}", bool(shed_all) and all(a.retry_after for a in shed_all)))
    for name in args.mix:
        # Each class is held to its own share of the bound on queue wait (CLASS_BOUND).
        bound = args.max_queue_wait * CLASS_BOUND[name] + capacity_p99 + 1.0
        worst_step = max(steps, key=lambda s: percentile(s.by_class.get(name, []) or [0.0], 99))
        worst = percentile(worst_step.by_class.get(name, []) or [0.0], 99)
        verdicts.append((f"p99 of accepted {name} work, worst step ({worst_step.factor:g}x) = {worst:.2f} s (bound: "
                         f"EXECUTOR_MAX_QUEUE_WAIT_S {args.max_queue_wait:g} x {CLASS_BOUND[name]:g} + capacity p99 "
                         f"{capacity_p99:.2f} + 1 = {bound:.2f} s)", worst <= bound))
    verdicts.append((f"lost = {lost} (target 0)", lost == 0))
    if over:
        first, last = over[0].memory_end, steps[-1].memory_end
        assert first is not None and last is not None
        grew = {name: (getattr(first, name), getattr(last, name)) for name in ("api", "worker", "postgres", "redis")}
        flat = all(b <= max(a * 1.2, a + 32) for a, b in grew.values())
        verdicts.append(("memory flat (end of the first overload step → end of the last): "
                         + ", ".join(f"{n} {a}→{b} MB" for n, (a, b) in grew.items()), flat))
    print()
    for text, met in verdicts:
        print(f"{text}: {'met' if met else 'NOT met'}")
    return all(met for _, met in verdicts)


def plot(capacity: float, steps: list[Step], path: Path, max_queue_wait: float, capacity_p99: float,
         classes: list[str]) -> None:
    """Left: offered, accepted and goodput, and each class's goodput; right: each class's p99
    latency of accepted work against its own bound (dashed, same colour)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"high": "tab:red", "normal": "tab:blue", "low": "tab:green"}
    loads = [len(s.answers) / s.seconds / capacity for s in steps]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=120)
    left.plot(loads, [len(s.answers) / s.seconds for s in steps], ":", color="grey", label="offered")
    left.plot(loads, [sum(a.status in (201, 202) for a in s.answers) / s.seconds for s in steps], "s--",
              color="black", alpha=0.5, label="accepted")
    left.plot(loads, [sum(a.completed for a in s.answers) / s.seconds for s in steps], "o-", color="black",
              label="goodput (completed within the wait)")
    for name in classes:
        left.plot(loads, [sum(a.completed for a in s.answers if a.priority == name) / s.seconds for s in steps],
                  ".-", color=colours[name], alpha=0.8, label=f"goodput, {name}")
    left.axhline(capacity, color="black", alpha=0.2, label=f"capacity ({capacity:.0f}/s, closed loop)")
    left.set_xlabel("offered load (× measured capacity)")
    left.set_ylabel("executions per second")
    left.legend(loc="upper left", fontsize=7)
    highest = 0.0
    for name in classes:
        p99 = [percentile(s.by_class.get(name, []) or [0.0], 99) for s in steps]
        bound = max_queue_wait * CLASS_BOUND[name] + capacity_p99 + 1.0
        highest = max(highest, bound, *p99)
        right.plot(loads, p99, "^-", color=colours[name], label=f"p99, {name}")
        right.axhline(bound, color=colours[name], alpha=0.5, linestyle="--", label=f"bound, {name}: {bound:.1f} s")
    right.set_xlabel("offered load (× measured capacity)")
    right.set_ylabel("p99 latency of accepted work (s)")
    right.set_ylim(0, highest * 1.15)
    right.legend(loc="upper left", fontsize=7)
    fig.suptitle("executor under open-loop overload (busybox cat, 1 api + 1 worker; "
                 f"EXECUTOR_MAX_QUEUE_WAIT_S = {max_queue_wait:g} s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"\nplot: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def _mix(text: str) -> dict[str, float]:
    shares = {name: float(share) for name, _, share in (part.partition("=") for part in text.split(","))}
    if not shares or set(shares) - {"high", "normal", "low"} or min(shares.values()) < 0:
        raise argparse.ArgumentTypeError("class=share,... among high, normal, low")
    return shares


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step-seconds", type=float, default=60.0)
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients measuring capacity")
    parser.add_argument("--factors", type=lambda v: [float(x) for x in v.split(",")],
                        default=[0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    parser.add_argument("--worker-concurrency", type=int, default=8)
    parser.add_argument("--max-queue-wait", type=float, default=5.0, help="EXECUTOR_MAX_QUEUE_WAIT_S")
    parser.add_argument("--fixed", action="store_true", help="evenly spaced arrivals instead of Poisson")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--drain-seconds", type=float, default=180.0)
    parser.add_argument("--quick", action="store_true", help="15 s steps, 10 s of capacity measure")
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--mix", type=_mix, default={"high": 0.2, "normal": 0.5, "low": 0.3},
                        help="the arrivals' priority classes and their shares, e.g. high=0.2,normal=0.5,low=0.3")
    args = parser.parse_args()
    if args.quick:
        args.step_seconds, args.capacity_seconds = 15.0, 10.0

    workdir = Path(tempfile.mkdtemp(prefix="executor-overload-"))
    workdir.chmod(0o755)
    postgres = EmbeddedPostgres(workdir / "pg", port=free_port())
    redis_server = EmbeddedRedis(workdir / "redis", port=free_port())
    client = docker.from_env()
    services: list[Service] = []
    try:
        image = build_images(client, ["busybox"], progress=lambda line: None)[0].tag
        postgres.start()
        redis_url = redis_server.start()
        dsn = postgres.create_database("overload")
        token = "exe_bench_" + secrets.token_urlsafe(16)
        wc = args.worker_concurrency
        env = {
            "EXECUTOR_DATABASE_URL": dsn, "EXECUTOR_REDIS_URL": redis_url, "EXECUTOR_BOOTSTRAP_TOKEN": token,
            "EXECUTOR_WORKER_CONCURRENCY": str(wc), "EXECUTOR_DOCKER_THREADS": str(max(32, 2 * wc)),
            "EXECUTOR_POOL_DEFAULT_MAX": str(wc), "EXECUTOR_POOL_MAX_CONTAINERS": str(max(32, wc)),
            # Refused only by the queue's bounds: no rate limit, no live cap (the operator is not
            # rate limited anyway).
            "EXECUTOR_USER_RATE_PER_S": "0", "EXECUTOR_SERVICE_RATE_PER_S": "0", "EXECUTOR_MAX_LIVE_PER_USER": "0",
            "EXECUTOR_MAX_QUEUE_WAIT_S": str(args.max_queue_wait), "EXECUTOR_MAX_WAIT_S": str(WAIT_S),
        }
        api = start("api", workdir, env)
        services.append(api)
        worker = start("worker", workdir, env)
        services.append(worker)
        agent_id = register_agent(api.url, token, image)
        postmaster = int((postgres.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        redis_pid = int(redis_server.pid_path.read_text().strip())
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start", flush=True)
        capacity, capacity_p99, steps, lost = asyncio.run(
            run(args, api, worker, token, agent_id, dsn, redis_url, (postmaster, redis_pid)))
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        stop(services)
        client.close()
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    met = report(args, capacity, capacity_p99, steps, lost)
    try:
        plot(capacity, steps, args.plot, args.max_queue_wait, capacity_p99, list(args.mix))
    except ImportError:
        print("\nno plot: matplotlib is missing (pip install -e '.[bench]')")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
