"""What receipts cost, measured in one run against the same work without them.

    .venv/bin/python bench/receipts.py [-n 400] [--concurrency 8] [--max-leaves 1000000]

It starts its own durable PostgreSQL (fsync on, as in production) and measures:

1. Finishing an execution, interleaved, on the same database:
     receipts off   the final UPDATE in its own transaction (what finishing was before receipts)
     receipts on    the same UPDATE plus the receipt, in one transaction: cost, lock the log's
                    state row, build and RFC 8785-encode the statement, sign it (Ed25519),
                    append its leaf and the completed nodes, store it (executor.executions.finish)
   back to back, then with C concurrent finishers (the log's row lock orders them).
2. Proofs against logs of 10^3 … 10^6 leaves: one log of `--max-leaves` leaves is bulk-loaded
   (nodes computed here with executor.receipts.merkle), then inclusion and consistency proofs
   are generated through executor.receipts.log (two queries: the log's state, then every node
   the proof needs) for trees of each size, and every proof is checked against its root.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402

from executor.embedded import EmbeddedPostgres, free_port  # noqa: E402
from executor.executions.finish import Finisher  # noqa: E402
from executor.receipts import log, merkle  # noqa: E402
from executor.receipts.issuer import ReceiptIssuer  # noqa: E402
from executor.receipts.keys import Signer  # noqa: E402
from executor.records.executions import Outcome, Status, Usage  # noqa: E402
from executor.settings import Limits  # noqa: E402
from executor.storage import agents as agent_sql  # noqa: E402
from executor.storage import executions as execution_sql  # noqa: E402
from executor.storage.database import create_pool, migrate  # noqa: E402

LIMITS = Limits(memory_mb=64, cpus=1.0, pids=32, timeout_s=10.0)
PRICING = {"currency": "USD", "decimals": 2, "per_call": 1, "per_cpu_second": 10, "per_mb_second": 0,
           "per_peak_mb": 0, "cap": None}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def outcome() -> Outcome:
    now = datetime.now(UTC)
    return Outcome(Status.COMPLETED, output={"words": 3, "lines": 0, "chars": 16},
                   raw_output=b'{"words":3,"lines":0,"chars":16}',
                   log=b"", exit_code=0, started_at=now, finished_at=now, oci_runtime="runc", pooled=True,
                   usage=Usage(wall_ms=31, cpu_ms=12, peak_memory_bytes=3_000_000, output_bytes=32))


async def running_executions(db: asyncpg.Pool, agent, count: int) -> list:
    records = []
    for n in range(count):
        record = await execution_sql.insert(db, agent_id=agent.agent_id, agent_version=agent.version,
                                            owner="user:bench",
                                            input={"text": f"hello wide world {n}"},
                                            stdin=b'{"text":"hello wide world %d"}' % n, limits=LIMITS)
        claimed = await execution_sql.claim(db, record.id, "bench")
        records.append(claimed[0])
    return records


async def finish_plain(db: asyncpg.Pool, record) -> None:
    async with db.acquire() as conn, conn.transaction():
        await execution_sql.finish(conn, record.id, outcome(), None, from_status=Status.RUNNING)


async def bench_finish(db: asyncpg.Pool, finisher: Finisher, agent, n: int, concurrency: int) -> None:
    on_records = await running_executions(db, agent, n)
    off_records = await running_executions(db, agent, n)
    timings: dict[str, list[float]] = {"receipts off": [], "receipts on": []}

    async def on(record) -> None:
        assert await finisher.finish(record, outcome(), from_status=Status.RUNNING, agent=agent) is not None

    async def off(record) -> None:
        await finish_plain(db, record)

    for _warm in range(5):  # connections, prepared statements, caches
        await on(on_records.pop())
        await off(off_records.pop())
    pairs = list(zip(on_records, off_records, strict=True))
    for round_number, (on_record, off_record) in enumerate(pairs):
        order = [("receipts on", on, on_record), ("receipts off", off, off_record)]
        for name, action, record in order if round_number % 2 else reversed(order):
            t0 = time.perf_counter()
            await action(record)
            timings[name].append((time.perf_counter() - t0) * 1000)

    print(f"\n1. finishing an execution, back to back ({len(pairs)} each, interleaved; durable PostgreSQL)\n")
    print("| path          | p50 ms | p95 ms | p99 ms |")
    print("|---------------|--------|--------|--------|")
    for name, values in timings.items():
        print(f"| {name:13} | {percentile(values, 50):6.2f} | {percentile(values, 95):6.2f} | "
              f"{percentile(values, 99):6.2f} |")
    added = percentile(timings["receipts on"], 50) - percentile(timings["receipts off"], 50)
    print(f"\nadded by the receipt, p50: {added:.2f} ms (target <= 2 ms): {'met' if added <= 2 else 'NOT met'}")

    print(f"\n   with {concurrency} concurrent finishers ({n} each)\n")
    print("| path          | finishes/s | p50 ms | p95 ms |")
    print("|---------------|------------|--------|--------|")
    for name, action in (("receipts off", off), ("receipts on", on)):
        records = await running_executions(db, agent, n)
        latencies: list[float] = []
        queue = list(records)

        async def finisher_loop(queue: list, action: Callable[[Any], Awaitable[None]], latencies: list[float]) -> None:
            while queue:
                record = queue.pop()
                t0 = time.perf_counter()
                await action(record)
                latencies.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(finisher_loop(queue, action, latencies) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        print(f"| {name:13} | {n / elapsed:10.0f} | {percentile(latencies, 50):6.2f} | "
              f"{percentile(latencies, 95):6.2f} |")

    size = await log.size(db)
    indices = [r["log_index"] for r in await db.fetch("SELECT log_index FROM receipts ORDER BY log_index")]
    assert indices == list(range(size)), "the log has a gap or a duplicate"
    print(f"\nlog after the runs: {size} leaves, indices 0..{size - 1} without gap or duplicate")


def build_tree(leaves: int) -> tuple[list[tuple[int, int, bytes]], list[bytes]]:
    frontier: list[bytes] = []
    nodes: list[tuple[int, int, bytes]] = []
    for index in range(leaves):
        frontier, completed = merkle.append(frontier, index, merkle.leaf_hash(index.to_bytes(8, "big")))
        nodes.extend(completed)
    return nodes, frontier


def root_at(lookup: dict[tuple[int, int], bytes], size: int) -> bytes:
    hashes = [lookup[block] for block in merkle.blocks(0, size)]
    root = hashes[-1]
    for digest in reversed(hashes[:-1]):
        root = merkle.node_hash(digest, root)
    return root


async def bench_proofs(db: asyncpg.Pool, max_leaves: int, samples: int) -> None:
    t0 = time.perf_counter()
    nodes, frontier = build_tree(max_leaves)
    built = time.perf_counter() - t0
    async with db.acquire() as conn:
        await conn.execute("TRUNCATE log_nodes")
        await conn.copy_records_to_table("log_nodes", records=nodes, columns=("level", "idx", "hash"))
        await conn.execute("UPDATE log_state SET size = $1, frontier = $2", max_leaves, frontier)
        await conn.execute("ANALYZE log_nodes")
    print(f"\n2. proofs: a log of {max_leaves:,} leaves ({len(nodes):,} stored nodes; hashed in {built:.1f} s, "
          f"loaded in {time.perf_counter() - t0 - built:.1f} s)\n")
    lookup = {(level, index): digest for level, index, digest in nodes}
    rng = random.Random(6)
    print("| tree size  | inclusion p50 ms | p95 ms | hashes | consistency p50 ms | p95 ms | hashes |")
    print("|------------|------------------|--------|--------|--------------------|--------|--------|")
    result = {}
    size = 1000
    while size <= max_leaves:
        root = root_at(lookup, size)
        inclusion, consistency, lengths = [], [], ([], [])
        for _ in range(samples):
            index = rng.randrange(size)
            t = time.perf_counter()
            proof = await log.inclusion_proof(db, index, size)
            inclusion.append((time.perf_counter() - t) * 1000)
            assert merkle.verify_inclusion(merkle.leaf_hash(index.to_bytes(8, "big")), index, size, proof, root)
            lengths[0].append(len(proof))
            old = rng.randrange(1, size)
            t = time.perf_counter()
            proof = await log.consistency_proof(db, old, size)
            consistency.append((time.perf_counter() - t) * 1000)
            assert merkle.verify_consistency(old, size, proof, root_at(lookup, old), root)
            lengths[1].append(len(proof))
        result[size] = percentile(inclusion, 50)
        print(f"| {size:>10,} | {percentile(inclusion, 50):16.2f} | {percentile(inclusion, 95):6.2f} | "
              f"{max(lengths[0]):6} | {percentile(consistency, 50):18.2f} | {percentile(consistency, 95):6.2f} | "
              f"{max(lengths[1]):6} |")
        size *= 10
    largest = max(result)
    print(f"\ninclusion proof p50 at {largest:,} leaves: {result[largest]:.2f} ms (target < 5 ms): "
          f"{'met' if result[largest] < 5 else 'NOT met'}; every proof above was checked against its root")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=400, help="finishes per path")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-leaves", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=300, help="proofs per tree size")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="executor-bench-receipts-"))
    await asyncio.to_thread(base.chmod, 0o755)
    server = EmbeddedPostgres(base / "pg", port=free_port(), durable=True)
    server.start()
    try:
        db = await create_pool(server.create_database("bench"), max_size=args.concurrency + 4)
        await migrate(db)
        signer = Signer(ring_path=base / "keys.json")
        await signer.publish(db)
        agent = await agent_sql.insert_agent(db, name="bench", kind="container", owner="operator:bench", version={
            "image": "executor/busybox:latest", "image_digest": "sha256:" + "0" * 64, "command": ["cat"],
            "description": None, "input_schema": {"type": "object"}, "output_schema": True,
            "limits": LIMITS.to_dict(), "pool": None, "pricing": PRICING})
        print(f"PostgreSQL {await db.fetchval('SHOW server_version')}, fsync {await db.fetchval('SHOW fsync')}, "
              f"synchronous_commit {await db.fetchval('SHOW synchronous_commit')}; "
              f"signing key {signer.current.kid[:12]}…")
        await bench_finish(db, Finisher(db, ReceiptIssuer(signer)), agent, args.n, args.concurrency)
        proofs_db = await create_pool(server.create_database("proofs"), max_size=4)
        await migrate(proofs_db)
        await bench_proofs(proofs_db, args.max_leaves, args.samples)
        await proofs_db.close()
        await db.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
