"""Sustained throughput of executor with 1 and 2 worker processes against raw docker-py, in one run.

    .venv/bin/python bench/throughput.py [--total 2000] [--concurrency 32] [--workers 1,2] [--rounds 6]
                                         [--worker-concurrency 8 | --engine-slots 8] [--pool | --no-pool]

It starts its own durable PostgreSQL and Redis and, for each worker count N, fresh
processes: one `executor api` and N `executor worker` (each its own instance id,
state directory and port; the same database and Redis), registers a trivial agent
(`cat` on the busybox image, 64 MB, 1 CPU, 32 pids) and runs executions from
CONCURRENCY closed-loop aiohttp clients, each `POST /v1/executions?wait=60` (then
`GET …?wait=60` until final), timed from the submission to the final record.

TOTAL is split into ROUNDS, each running every setup:

  raw docker-py   the same hardened create / attach / start / write stdin / read / wait /
                  remove as bench/latency.py, from CONCURRENCY threads, through stock
                  docker-py (`docker.from_env()`, not the service's tuned client)
  1 worker        fresh processes, a new database, a new Redis database
  2 workers       the same, fresh again (pools and caches start alike)

so that the machine's drift (raw docker-py alone moved by 25% within an hour here) falls on
every setup alike. Each round starts one setup later than the one before (raw, 1, 2; then
1, 2, raw; then 2, raw, 1; ...), so that every setup runs first, second and last equally
often over 6 rounds: what builds up within a round falls on every setup alike too. A
setup's result is its rounds together: all its executions over all its timed seconds; the
ratio of each round is printed too.

Each worker runs WORKER_CONCURRENCY tasks at once (8: what saturates this 2-core host's
engine), so 2 workers run 16 on the one engine; `--engine-slots 8` shares 8 out among the
workers instead (2 x 4).

Each setup first runs WARMUP executions at the same concurrency, not timed. After its
clients return, PostgreSQL is read directly: every accepted execution must be final, with
one receipt, and the transparency log must hold exactly one leaf per receipt. An accepted
execution that is missing, not final, or final without its receipt is *lost* (must be 0);
the other final states are counted as *not COMPLETED*.

It also measures what one execution costs the shared parts, over the timed executions:
PostgreSQL statements (pg_stat_statements), transactions and rows written
(pg_stat_user_tables, read after the processes exited so every backend has flushed its
counters), WAL and database growth; Redis commands (INFO commandstats) and the job
stream's longest length; containers started (the workers' pool counters); CPU time of the
executor processes. Background work (the webhook outbox poll, tree-head signing, job
renewal) runs by the clock, not per execution, and is included: it shows in the
breakdown as fractions well below 1 a call.

The rate limits, the per-user live cap and the queue depth are raised so that nothing is
refused (the clients use an operator token, which is not rate limited anyway). Absolute
numbers vary between machines and minutes; the ratio to raw docker-py is the result
(target: at least 0.90 for every worker count). Exit status 1 when anything was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import docker
import redis
import redis.asyncio as aioredis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.latency import INPUT, LIMITS, raw_docker_py, register_agent  # noqa: E402
from bench.phases import cpu_by_command, process_cpu_s  # noqa: E402
from bench.throughput_results import (  # noqa: E402
    FINAL,
    Audit,
    Costs,
    Drive,
    Result,
    merge,
    print_costs,
    print_rounds,
    table_row,
)
from executor.embedded import EmbeddedPostgres, EmbeddedRedis, free_port  # noqa: E402
from runtimes.base import INSTANCE_LABEL  # noqa: E402
from runtimes.engine import DockerEngine  # noqa: E402
from runtimes.images import build_images  # noqa: E402

WAIT_S = 60  # ?wait= of each request (EXECUTOR_MAX_WAIT_S is 60)
FINAL_DEADLINE_S = 300.0  # an execution not final this long after its submission counts as lost
RAW_LABEL = "org.executor.bench"  # on the raw docker-py containers, so that leftovers can be swept
POOL_MAX = 8  # EXECUTOR_POOL_DEFAULT_MAX: the shipped default
PGSTAT_SETTLE_S = 11.0  # PostgreSQL flushes an idle backend's table counters within 10 s


# --- raw docker-py -----------------------------------------------------------------------------

def raw_throughput(engine: DockerEngine, image: str, run_id: str, concurrency: int, total: int) -> Result:
    drive, failures = Drive(), collections.Counter[str]()
    lock = threading.Lock()

    def one(_: int) -> None:
        try:
            elapsed = raw_docker_py(engine, image, {RAW_LABEL: run_id})
        except Exception as exc:  # counted, never fatal: the reference must finish its run
            with lock:
                failures[type(exc).__name__] += 1
            return
        with lock:
            drive.latencies.append(elapsed)
            drive.statuses["COMPLETED"] += 1

    cpu0, engine0 = _own_cpu_s(), engine_cpu_s()
    with ThreadPoolExecutor(concurrency) as pool:
        t0 = time.perf_counter()
        list(pool.map(one, range(total)))
        drive.elapsed_s = time.perf_counter() - t0
    result = Result("raw docker-py", drive, failures=sum(failures.values()))
    n = max(1, total)
    result.costs = Costs(containers_started=1.0, bench_cpu_ms=(_own_cpu_s() - cpu0) * 1000 / n,
                         engine_cpu_ms=(engine_cpu_s() - engine0) * 1000 / n)
    drive.refused.update(failures)
    return result


# --- the service's processes -------------------------------------------------------------------

@dataclass
class Process:
    name: str
    role: str
    url: str
    log_path: Path
    popen: subprocess.Popen[bytes]
    instance_id: str


def start_process(role: str, name: str, workdir: Path, env_extra: dict[str, str], *, instance_id: str) -> Process:
    """`executor ROLE` with its own state directory, port and instance id."""
    state_dir = workdir / name
    state_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_")}
    env.update(env_extra, EXECUTOR_STATE_DIR=str(state_dir), EXECUTOR_PORT=str(port),
               EXECUTOR_INSTANCE_ID=instance_id)
    log_path = state_dir / f"{role}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen([sys.executable, "-m", "executor", role], env=env, cwd=REPO, stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Process(name, role, f"http://127.0.0.1:{port}", log_path, popen, instance_id)


def wait_ready(process: Process, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited with {process.popen.returncode}{tail(process.log_path)}")
        try:
            with urllib.request.urlopen(process.url + "/readyz", timeout=2):
                return
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)
    raise RuntimeError(f"{process.name} was not ready within {timeout_s:.0f} s{tail(process.log_path)}")


def stop_processes(processes: list[Process], timeout_s: float = 180.0) -> None:
    """SIGTERM all at once (a worker lets its tasks finish and removes its containers), then wait;
    SIGKILL what is still there after timeout_s."""
    for process in processes:
        if process.popen.poll() is None:
            process.popen.terminate()
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"  {process.name} did not stop within {timeout_s:.0f} s: killed", file=sys.stderr)
            process.popen.kill()
            process.popen.wait()


def tail(path: Path, lines: int = 40) -> str:
    try:
        return f"\n--- {path} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def engine_cpu_s() -> float:
    """CPU time of dockerd and containerd on this host (not the shims and runc: they exit with
    their containers). Anything else using the engine meanwhile counts too."""
    return cpu_by_command("dockerd", "containerd")


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def http_json(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def pool_counters(workers: list[Process], token: str) -> dict[str, float] | None:
    """The workers' pool counters, summed; None when the pool is off."""
    total: collections.Counter[str] = collections.Counter()
    for worker in workers:
        pool = http_json(worker.url + "/v1/status", token)["pool"]
        if pool is None:
            return None
        total.update({k: pool[k] for k in ("hits", "misses", "refills", "discarded")})
    return dict(total)


# --- the clients -------------------------------------------------------------------------------

async def drive_service(base_url: str, token: str, agent_id: str, concurrency: int, total: int,
                        redis_url: str | None = None) -> Drive:
    """TOTAL executions from CONCURRENCY closed-loop clients; with redis_url, the job stream's length
    is sampled meanwhile."""
    drive = Drive()
    headers = {"Authorization": f"Bearer {token}"}
    body = {"agent_id": agent_id, "input": INPUT}
    issued = 0

    async def one(session: aiohttp.ClientSession) -> None:
        t0 = time.perf_counter()
        try:
            async with session.post(f"{base_url}/v1/executions?wait={WAIT_S}", json=body,
                                    headers=headers) as response:
                record = await response.json(content_type=None)
                status = response.status
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            drive.refused[type(exc).__name__] += 1  # unknown whether accepted: the audit finds out
            return
        if status not in (201, 202):
            drive.refused[f"HTTP {status} {record.get('type', '') if isinstance(record, dict) else ''}"] += 1
            return
        drive.accepted.append(record["id"])
        while record["status"] not in FINAL and time.perf_counter() - t0 < FINAL_DEADLINE_S:
            try:
                async with session.get(f"{base_url}/v1/executions/{record['id']}?wait={WAIT_S}",
                                       headers=headers) as response:
                    if response.status == 200:
                        record = await response.json()
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(1)
        elapsed = time.perf_counter() - t0
        if record["status"] not in FINAL:
            drive.unfinished += 1
            return
        drive.latencies.append(elapsed)
        drive.statuses[record["status"]] += 1
        if record["status"] == "COMPLETED" and record["output"] != INPUT:
            drive.wrong_output += 1

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal issued
        while issued < total:
            issued += 1
            await one(session)

    async def sample_stream(stop: asyncio.Event) -> None:
        assert redis_url is not None
        client_ = aioredis.Redis.from_url(redis_url)
        try:
            while not stop.is_set():
                drive.max_stream = max(drive.max_stream, int(await client_.xlen("executor:jobs")))
                drive.stream_samples += 1
                await asyncio.sleep(0.25)
        finally:
            await client_.aclose()

    timeout = aiohttp.ClientTimeout(total=WAIT_S + 60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_stream(stop)) if redis_url else None
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        drive.elapsed_s = time.perf_counter() - t0
        stop.set()
        if sampler:
            await sampler
    return drive


# --- PostgreSQL and Redis, read directly ---------------------------------------------------------

async def audit(dsn: str, accepted: list[str], warmup: list[str]) -> Audit:
    """Every accepted execution final with one receipt; the log one leaf per receipt, gapless.
    One read-only transaction (it shows as one in the database's transaction count)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await _audit(conn, accepted, warmup)
    finally:
        await conn.close()


async def _lost_of(conn: asyncpg.Connection, ids: list[str]) -> tuple[dict[str, int], dict[str, int], int, int]:
    """(count by status, count by error type, missing, final without receipt) of these ids."""
    by_status: collections.Counter[str] = collections.Counter()
    error_types: collections.Counter[str] = collections.Counter()
    for row in await conn.fetch("SELECT status, error_type, count(*) AS n FROM executions"
                                " WHERE id = ANY($1::uuid[]) GROUP BY status, error_type", ids):
        by_status[row["status"]] += row["n"]
        if row["error_type"]:
            error_types[row["error_type"]] += row["n"]
    unreceipted = await conn.fetchval(
        "SELECT count(*) FROM executions e WHERE e.id = ANY($1::uuid[]) AND e.status = ANY($2::text[])"
        " AND NOT EXISTS (SELECT 1 FROM receipts r WHERE r.execution_id = e.id)", ids, list(FINAL))
    return dict(by_status), dict(error_types), len(ids) - sum(by_status.values()), unreceipted


async def _audit(conn: asyncpg.Connection, accepted: list[str], warmup: list[str]) -> Audit:
    ids = list(set(accepted))
    by_status, error_types, missing, unreceipted = await _lost_of(conn, ids)
    problems = []
    if len(ids) != len(accepted):
        problems.append(f"{len(accepted) - len(ids)} ids were answered twice")
    warm_status, _, warm_missing, warm_unreceipted = await _lost_of(conn, list(set(warmup)))
    warm_lost = warm_missing + warm_unreceipted + sum(n for s, n in warm_status.items() if s not in FINAL)
    if warm_lost:
        problems.append(f"{warm_lost} warm-up executions lost")
    reruns = await conn.fetchval("SELECT count(*) FROM executions WHERE id = ANY($1::uuid[]) AND attempts > 1", ids)
    executions = await conn.fetchval("SELECT count(*) FROM executions")
    known = list(set(accepted) | set(warmup))
    extra_not_final = await conn.fetchval("SELECT count(*) FROM executions WHERE NOT (id = ANY($1::uuid[]))"
                                          " AND NOT (status = ANY($2::text[]))", known, list(FINAL))
    final = await conn.fetchval("SELECT count(*) FROM executions WHERE status = ANY($1::text[])", list(FINAL))
    receipts = await conn.fetchval("SELECT count(*) FROM receipts")
    duplicates = await conn.fetchval(
        "SELECT count(*) FROM (SELECT execution_id FROM receipts GROUP BY 1 HAVING count(*) > 1) d")
    log_size = await conn.fetchval("SELECT size FROM log_state WHERE singleton")
    indices = await conn.fetchrow("SELECT count(DISTINCT log_index) AS n, min(log_index) AS lo,"
                                  " max(log_index) AS hi FROM receipts")
    if receipts != final:
        problems.append(f"{receipts} receipts for {final} final executions")
    if duplicates:
        problems.append(f"{duplicates} executions with more than one receipt")
    if log_size != receipts:
        problems.append(f"log size {log_size} != {receipts} receipts")
    if receipts and (indices["n"] != receipts or indices["lo"] != 0 or indices["hi"] != receipts - 1):
        problems.append(f"log indices not 0..{receipts - 1} once each: {dict(indices)}")
    return Audit(by_status, error_types, missing=missing, unreceipted=unreceipted,
                 extra_rows=executions - len(known), extra_not_final=extra_not_final, problems=problems,
                 reruns=reruns)


async def pg_counters(admin_dsn: str, database: str) -> dict[str, Any]:
    """Counters that are exact when read: the WAL position, the database's size (read from the
    admin database, so that reading them adds nothing to the measured one's counts)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        return {"lsn": await conn.fetchval("SELECT pg_current_wal_lsn()::text"),
                "size": await conn.fetchval("SELECT pg_database_size($1)", database)}
    finally:
        await conn.close()


async def pg_table_counters(dsn: str) -> dict[str, Any]:
    """Counters PostgreSQL flushes lazily: read them PGSTAT_SETTLE_S after the last activity, or once
    the backends exited. One transaction."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(readonly=True):
            tables = {row["relname"]: (row["n_tup_ins"], row["n_tup_upd"], row["n_tup_del"]) for row in
                      await conn.fetch("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables")}
            xacts = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        return {"tables": tables, "xacts": xacts}
    finally:
        await conn.close()


async def pg_statements(admin_dsn: str, database: str, *, reset: bool) -> list[tuple[str, int, int]]:
    """(query, calls, rows) run in `database`, from pg_stat_statements (created in the admin database)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        if reset:
            await conn.execute("SELECT pg_stat_statements_reset()")
            return []
        rows = await conn.fetch("SELECT query, calls, rows FROM pg_stat_statements"
                                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)", database)
        return [(row["query"], row["calls"], row["rows"]) for row in rows]
    finally:
        await conn.close()


async def pg_wal_diff(admin_dsn: str, after: str, before: str) -> float:
    conn = await asyncpg.connect(admin_dsn)
    try:
        diff = await conn.fetchval("SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)", after, before)
        return float(diff)
    finally:
        await conn.close()


async def prepare_postgres(admin_dsn: str, max_connections: int) -> bool:
    """Load pg_stat_statements (and make room for every process's pool); True when it is available.
    Takes effect at the next start: ALTER SYSTEM survives the settings the server rewrites."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        available = await conn.fetchval("SELECT count(*) FROM pg_available_extensions"
                                        " WHERE name = 'pg_stat_statements'")
        if available:
            await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        await conn.execute(f"ALTER SYSTEM SET max_connections = {int(max_connections)}")
        return bool(available)
    finally:
        await conn.close()


async def create_extension(admin_dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()


def redis_commands(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


# Statements that change rows (a `SELECT … FOR UPDATE` only locks one).
_WRITES = re.compile(r"\bINSERT\s+INTO\b|\bUPDATE\s+\S+(\s+\w+)?\s+SET\b|\bDELETE\s+FROM\b", re.IGNORECASE)
# Redis commands that are not the service's (the bench's own INFO; connection set-up).
_OWN_COMMANDS = {"info", "hello", "client|setinfo", "client|setname", "ping"}


# --- one setup of the service ------------------------------------------------------------------

@dataclass
class Context:
    args: argparse.Namespace
    postgres: EmbeddedPostgres
    redis_base: str
    image: str
    token: str
    run_id: str
    workdir: Path
    statements: bool  # pg_stat_statements is loaded
    processes: list[Process] = field(default_factory=list)  # running now
    instance_ids: list[str] = field(default_factory=list)  # of every worker started


def worker_concurrency(args: argparse.Namespace, workers: int) -> int:
    """EXECUTOR_WORKER_CONCURRENCY of each of `workers` processes: --worker-concurrency, or with
    --engine-slots those shared out (workers on one engine share its capacity)."""
    if args.engine_slots is not None:
        return max(1, args.engine_slots // workers)
    return args.worker_concurrency


def service_env(ctx: Context, database_url: str, redis_url: str, workers: int) -> dict[str, str]:
    args = ctx.args
    wc = worker_concurrency(args, workers)
    return {
        "EXECUTOR_DATABASE_URL": database_url, "EXECUTOR_REDIS_URL": redis_url, "EXECUTOR_BOOTSTRAP_TOKEN": ctx.token,
        "EXECUTOR_WORKER_CONCURRENCY": str(wc), "EXECUTOR_DOCKER_THREADS": str(max(32, 2 * wc)),
        "EXECUTOR_POOL_ENABLED": str(args.pool).lower(),
        # A shelf may hold as many as the worker runs at once (its own sizing rule picks less).
        "EXECUTOR_POOL_DEFAULT_MAX": str(POOL_MAX), "EXECUTOR_POOL_MAX_CONTAINERS": str(max(32, wc)),
        "EXECUTOR_POOL_MAX_MEMORY_MB": str(max(4096, 2 * wc * LIMITS.memory_mb)),
        # Nothing refused: no rate limit (0: off), no live cap, a queue deeper than the run.
        "EXECUTOR_USER_RATE_PER_S": "0", "EXECUTOR_SERVICE_RATE_PER_S": "0", "EXECUTOR_MAX_LIVE_PER_USER": "0",
        "EXECUTOR_MAX_QUEUE_DEPTH": str(max(10000, 4 * (args.total + args.warmup))),
        "EXECUTOR_MAX_WAIT_S": str(WAIT_S),
        "EXECUTOR_METERING": args.metering,
    }


def start_setup(ctx: Context, workers: int, database_url: str, redis_url: str) -> tuple[Process, list[Process]]:
    env = service_env(ctx, database_url, redis_url, workers)
    setup_dir = ctx.workdir / f"w{workers}"

    def start(role: str, name: str) -> Process:
        process = start_process(role, name, setup_dir, env, instance_id=f"bench-{ctx.run_id}-w{workers}-{name}")
        ctx.processes.append(process)
        if role == "worker":
            ctx.instance_ids.append(process.instance_id)
        return process

    api = start("api", "api")
    wait_ready(api)  # it migrates the database before the workers come up
    worker_processes = [start("worker", f"worker{i + 1}") for i in range(workers)]
    for process in worker_processes:
        wait_ready(process)
    return api, worker_processes


def round_sizes(total: int, rounds: int) -> list[int]:
    """TOTAL split into ROUNDS nearly equal parts."""
    return [total // rounds + (1 if i < total % rounds else 0) for i in range(rounds)]


def run_setup(ctx: Context, workers: int, index: int, total: int) -> Result:
    args = ctx.args
    name = f"{workers} worker{'s' if workers > 1 else ''}"
    database = f"bench_w{workers}_{index}"
    database_url = ctx.postgres.create_database(database)
    admin = ctx.postgres.dsn
    redis_url = f"{ctx.redis_base}/{1 + (index - 1) % 15}"  # db 0 is left alone; a reused one is flushed
    with redis.Redis.from_url(redis_url) as fresh:
        fresh.flushdb()
    api, worker_processes = start_setup(ctx, workers, database_url, redis_url)
    started = [api, *worker_processes]
    try:
        agent_id = register_agent(api.url, ctx.token, ctx.image)
        print(f"  {name}: api + {workers} worker process(es) ready; warming up ({args.warmup} executions)",
              flush=True)
        warm = asyncio.run(drive_service(api.url, ctx.token, agent_id, args.concurrency, args.warmup))
        time.sleep(PGSTAT_SETTLE_S)  # every backend flushes its counters; the pool refills

        tables_before = asyncio.run(pg_table_counters(database_url))
        exact_before = asyncio.run(pg_counters(admin, database))
        if ctx.statements:
            asyncio.run(pg_statements(admin, database, reset=True))
        commands_before = redis_commands(redis_url)
        pool_before = pool_counters(worker_processes, ctx.token)
        api_cpu_before = process_cpu_s(api.popen.pid)
        cpu_before = sum(process_cpu_s(p.popen.pid) for p in started)
        own_before, engine_before = _own_cpu_s(), engine_cpu_s()
        print(f"  {name}: measuring {total} executions from {args.concurrency} clients", flush=True)

        drive = asyncio.run(drive_service(api.url, ctx.token, agent_id, args.concurrency, total, redis_url))

        api_cpu_after = process_cpu_s(api.popen.pid)
        cpu_after = sum(process_cpu_s(p.popen.pid) for p in started)
        own_after, engine_after = _own_cpu_s(), engine_cpu_s()
        commands_after = redis_commands(redis_url)
        pool_after = pool_counters(worker_processes, ctx.token)
        statements = asyncio.run(pg_statements(admin, database, reset=False)) if ctx.statements else []
        exact_after = asyncio.run(pg_counters(admin, database))
        result = Result(name, drive)
        result.audit = asyncio.run(audit(database_url, drive.accepted, warm.accepted))
        if warm.refused or warm.unfinished or warm.wrong_output:
            result.audit.problems.append(f"warm-up: refused {dict(warm.refused)}, {warm.unfinished} unfinished, "
                                         f"{warm.wrong_output} wrong outputs")
        wal = asyncio.run(pg_wal_diff(admin, exact_after["lsn"], exact_before["lsn"]))
    finally:
        stop_processes(started)  # their backends exit, and flush what they counted
        for process in started:
            ctx.processes.remove(process)
    time.sleep(1.0)
    tables_after = asyncio.run(pg_table_counters(database_url))

    n = max(1, drive.finished)
    costs = Costs()
    for query, calls, rows in statements:
        costs.statements.append((" ".join(query.split()), calls / n, rows / n, bool(_WRITES.search(query))))
    costs.statements.sort(key=lambda s: -s[1])
    # Less the bench's own two transactions in this database: the first counter read, the audit.
    costs.xacts = (tables_after["xacts"] - tables_before["xacts"] - 2) / n
    for table, after in tables_after["tables"].items():
        before = tables_before["tables"].get(table, (0, 0, 0))
        inserted, updated, deleted = ((a - b) / n for a, b in zip(after, before, strict=True))
        if inserted or updated or deleted:
            costs.rows[table] = (inserted, updated, deleted)
    costs.wal_bytes = wal / n
    costs.db_bytes = (exact_after["size"] - exact_before["size"]) / n
    for command, calls in commands_after.items():
        delta = calls - commands_before.get(command, 0)
        if command == "xlen":
            delta -= drive.stream_samples  # the bench's own sampling
        if delta > 0 and command not in _OWN_COMMANDS:
            costs.redis[command] = delta / n
    if pool_before is None or pool_after is None:
        costs.containers_started = 1.0
    else:
        delta_pool = {k: pool_after[k] - pool_before[k] for k in pool_after}
        costs.containers_started = (delta_pool["refills"] + delta_pool["misses"]) / n
        costs.pool_counts = {"hits": delta_pool["hits"], "claims": delta_pool["hits"] + delta_pool["misses"],
                             "discarded": delta_pool["discarded"]}
    costs.executor_cpu_ms = (cpu_after - cpu_before) * 1000 / n
    costs.api_cpu_ms = (api_cpu_after - api_cpu_before) * 1000 / n
    costs.bench_cpu_ms = (own_after - own_before) * 1000 / n
    costs.engine_cpu_ms = (engine_after - engine_before) * 1000 / n
    result.costs = costs
    return result


def wait_until_gone(client: docker.DockerClient, label: str, timeout_s: float = 60.0) -> int:
    """Wait for the containers with this label to be removed; remove what is left after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not client.api.containers(all=True, filters={"label": label}):
            return 0
        time.sleep(0.5)
    leftover = client.api.containers(all=True, filters={"label": label})
    for container in leftover:
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_container(container["Id"], force=True)
    return len(leftover)


def engine_facts(client: docker.DockerClient) -> str:
    info = client.info()
    return (f"{os.cpu_count()} cores, Engine {info.get('ServerVersion')}, cgroup v{info.get('CgroupVersion', '?')}"
            f" ({info.get('CgroupDriver')}), {info.get('Driver')}, runtime {info.get('DefaultRuntime')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total", type=int, default=2000, help="timed executions per setup")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients (threads for raw docker-py)")
    parser.add_argument("--workers", default="1,2", help="worker process counts, comma-separated")
    parser.add_argument("--worker-concurrency", type=int, default=8,
                        help="EXECUTOR_WORKER_CONCURRENCY of each worker process")
    parser.add_argument("--engine-slots", type=int, default=None,
                        help="instead: tasks the workers together run at once on the one engine, shared out"
                             " among them (8 saturate this 2-core host's engine)")
    parser.add_argument("--pool", action=argparse.BooleanOptionalAction, default=True,
                        help="pre-started containers (EXECUTOR_POOL_ENABLED)")
    parser.add_argument("--metering", default="auto", choices=["auto", "cgroup", "stats", "off"],
                        help="EXECUTOR_METERING of the workers (off: what metering costs)")
    parser.add_argument("--recheck", action="store_true",
                        help="measure raw docker-py again after the last setup (how much the machine drifted)")
    parser.add_argument("--rounds", type=int, default=6,
                        help="split TOTAL into this many rounds of every setup, each round starting one setup"
                             " later, so that the machine's drift over the run falls on every setup alike")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed executions per setup (default: 2 x concurrency)")
    args = parser.parse_args()
    args.warmup = 2 * args.concurrency if args.warmup is None else args.warmup
    worker_counts = [int(part) for part in args.workers.split(",") if part.strip()]
    if not worker_counts or min(worker_counts) < 1 or args.total < 1 or args.concurrency < 1:
        parser.error("--workers needs counts >= 1; --total and --concurrency must be positive")
    if not 1 <= args.rounds <= args.total:
        parser.error("--rounds must be between 1 and --total")

    run_id = secrets.token_hex(4)
    workdir = Path(tempfile.mkdtemp(prefix=f"executor-bench-tp-{run_id}-", dir="/tmp"))
    workdir.chmod(0o755)  # PostgreSQL runs as another user when we are root
    postgres = EmbeddedPostgres(workdir / "pg", port=free_port())
    redis_server = EmbeddedRedis(workdir / "redis", port=free_port())
    client = docker.from_env()
    # The reference is stock docker-py, as a user writes it: not the service's tuned client.
    engine = DockerEngine(threads=max(32, 2 * args.concurrency),
                          client=docker.from_env(max_pool_size=max(32, 2 * args.concurrency)))
    ctx: Context | None = None
    results: list[Result] = []
    rounds: list[list[Result]] = []
    started_at = datetime.datetime.now(datetime.UTC)
    try:
        image = build_images(client, ["busybox"], progress=lambda line: None)[0].tag
        facts = engine_facts(client)
        postgres.start()
        # Room for every process's pool (20 connections each), and pg_stat_statements: one restart.
        statements = asyncio.run(prepare_postgres(postgres.dsn, 40 + 20 * (1 + max(worker_counts))))
        postgres.stop()
        postgres.start()
        if statements:
            asyncio.run(create_extension(postgres.dsn))
        redis_base = redis_server.start().rsplit("/", 1)[0]
        ctx = Context(args, postgres, redis_base, image, "exe_bench_" + secrets.token_urlsafe(16), run_id, workdir,
                      statements)

        print(f"executor throughput benchmark, {started_at:%Y-%m-%d %H:%M} UTC: {facts}", flush=True)
        index = 0
        setups: list[int | None] = [None, *worker_counts]  # None: raw docker-py
        for round_number, size in enumerate(round_sizes(args.total, args.rounds), start=1):
            # Each round starts one setup later: every setup runs first, second, ... alike, so that
            # what builds up within a round (the engine's state, dying memory cgroups) is shared out.
            shift = (round_number - 1) % len(setups)
            order = setups[shift:] + setups[:shift]
            print(f"round {round_number} of {args.rounds}: {size} timed executions per setup", flush=True)
            measured: dict[int | None, Result] = {}
            for position, workers in enumerate(order):
                if position:
                    time.sleep(2.0)  # let the engine settle after the previous setup's removals
                if workers is None:
                    print(f"  raw docker-py: warming up ({args.warmup} runs)", flush=True)
                    raw_throughput(engine, image, run_id, args.concurrency, args.warmup)
                    print(f"  raw docker-py: measuring {size} runs from {args.concurrency} threads", flush=True)
                    measured[None] = raw_throughput(engine, image, run_id, args.concurrency, size)
                    wait_until_gone(client, f"{RAW_LABEL}={run_id}")
                    continue
                index += 1
                measured[workers] = run_setup(ctx, workers, index, size)
                for instance_id in ctx.instance_ids:
                    wait_until_gone(client, f"{INSTANCE_LABEL}={instance_id}")
            rounds.append([measured[setup] for setup in setups])
        results = [merge(r.name, [this_round[i] for this_round in rounds]) for i, r in enumerate(rounds[0])]
        if args.recheck:
            time.sleep(2.0)
            print(f"  raw docker-py again: measuring {args.total} runs from {args.concurrency} threads", flush=True)
            recheck = raw_throughput(engine, image, run_id, args.concurrency, args.total)
            recheck.name = "raw, again"
            results.append(recheck)
    except BaseException:
        if ctx is not None:
            for process in ctx.processes:
                print(tail(process.log_path, 20), file=sys.stderr)
        raise
    finally:
        if ctx is not None:
            stop_processes(list(ctx.processes))
        leftovers = wait_until_gone(client, f"{RAW_LABEL}={run_id}", timeout_s=5)
        for instance_id in ctx.instance_ids if ctx is not None else []:
            leftovers += wait_until_gone(client, f"{INSTANCE_LABEL}={instance_id}", timeout_s=30)
        if leftovers:
            print(f"removed {leftovers} leftover container(s)", file=sys.stderr)
        engine.close()
        client.close()
        redis_server.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    reference = results[0].rate
    pool = f"pool on (EXECUTOR_POOL_DEFAULT_MAX={POOL_MAX})" if args.pool else "pool off"
    slots = ", ".join(f"{w} x {worker_concurrency(args, w)}" for w in worker_counts)
    print(f"\nthroughput: {args.total} timed executions per setup from {args.concurrency} concurrent clients "
          f"(busybox `cat`, same hardening); workers x EXECUTOR_WORKER_CONCURRENCY: {slots}, "
          f"{pool}; {args.rounds} round(s), each running every setup, each round starting one setup later, "
          f"each setup with "
          f"fresh processes, database and Redis database; {args.warmup} warm-up executions per setup and round "
          f"not timed; raw docker-py is stock docker-py (docker.from_env)\n")
    print("| setup         | executions | exec/s | vs raw docker-py | p50 ms  | p95 ms  | p99 ms  | lost "
          "| not COMPLETED |")
    print("|---------------|------------|--------|------------------|---------|---------|---------|------"
          "|---------------|")
    for result in results:
        print(table_row(result, reference))
    if len(rounds) > 1:
        print_rounds(rounds)

    failed = False
    print()
    for result in results:
        drive, audit_ = result.drive, result.audit
        notes = []
        if drive.refused:
            notes.append("refused or failed requests: " + ", ".join(f"{k} x{v}" for k, v in drive.refused.items()))
        if drive.wrong_output:
            notes.append(f"{drive.wrong_output} COMPLETED with a wrong output")
        if audit_ is not None:
            if audit_.not_completed:
                notes.append("not COMPLETED: " + ", ".join(f"{k} x{v}" for k, v in audit_.error_types.items()))
            if audit_.missing or audit_.unreceipted:
                notes.append(f"{audit_.missing} accepted but not stored, {audit_.unreceipted} final without receipt")
            if audit_.extra_rows:
                notes.append(f"{audit_.extra_rows} stored executions no client was told about"
                             f" ({audit_.extra_not_final} of them not final: counted as lost)")
            if audit_.reruns:
                notes.append(f"{audit_.reruns} started more than once")
            notes += audit_.problems
            failed |= bool(audit_.lost or audit_.problems or drive.wrong_output)
        else:
            failed |= bool(result.failures)
        print(f"{result.name}: " + ("; ".join(notes) if notes else "every execution final and COMPLETED"
                                    + (", one receipt each, log size = receipts" if audit_ else "")))
    print_costs(results)
    print()
    for result in results[1:]:
        if result.audit is None:
            print(f"raw docker-py drift over the run: {result.rate / reference:.2f}x the first measurement")
            continue
        ratio = result.rate / reference if reference else 0.0
        met = ratio >= 0.90 and result.lost == 0
        print(f"{result.name} throughput / raw docker-py = {ratio:.2f} (target >= 0.9, none lost): "
              f"{'met' if met else 'NOT met'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
