"""What bench/throughput.py measures: the records of one measured phase, their merge over
rounds, and the tables it prints."""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass, field, fields

from bench.latency import percentile

FINAL = ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED")


# --- measurements ------------------------------------------------------------------------------

@dataclass
class Drive:
    """What the clients saw over one measured phase."""

    elapsed_s: float = 0.0
    latencies: list[float] = field(default_factory=list)  # submit → final, of the executions that ended
    accepted: list[str] = field(default_factory=list)  # ids answered 201/202
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)  # final status, client side
    refused: collections.Counter[str] = field(default_factory=collections.Counter)  # HTTP status or exception
    wrong_output: int = 0  # COMPLETED with an output other than the input
    unfinished: int = 0  # accepted, not final by FINAL_DEADLINE_S (client side)
    max_stream: int = 0  # longest job stream seen (sampled)
    stream_samples: int = 0

    @property
    def finished(self) -> int:
        return len(self.latencies)


@dataclass
class Audit:
    """What PostgreSQL says about the accepted executions, after the clients returned."""

    by_status: dict[str, int]
    error_types: dict[str, int]
    missing: int  # accepted ids with no row
    unreceipted: int  # final without a receipt
    extra_rows: int  # rows nobody was told about (a lost response)
    extra_not_final: int  # of those, not final: lost as well
    problems: list[str]  # broken invariants of the receipts and the log
    reruns: int  # executions started more than once

    @property
    def lost(self) -> int:
        not_final = sum(n for status, n in self.by_status.items() if status not in FINAL)
        return self.missing + not_final + self.unreceipted + self.extra_not_final

    @property
    def not_completed(self) -> int:
        return sum(n for status, n in self.by_status.items() if status in FINAL and status != "COMPLETED")


@dataclass
class Costs:
    """What the timed executions cost the shared parts, per execution."""

    statements: list[tuple[str, float, float, bool]] = field(default_factory=list)  # query, calls, rows, writes
    xacts: float = 0.0
    rows: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # table → ins, upd, del
    wal_bytes: float = 0.0
    db_bytes: float = 0.0
    redis: dict[str, float] = field(default_factory=dict)
    containers_started: float = 0.0
    pool_counts: dict[str, float] | None = None  # hits, claims, discarded over the timed phase; None: pool off
    executor_cpu_ms: float = 0.0  # the api and worker processes together
    api_cpu_ms: float = 0.0
    engine_cpu_ms: float = 0.0  # dockerd + containerd
    bench_cpu_ms: float = 0.0  # this process: the clients (raw docker-py: the docker-py calls)

    @property
    def pool(self) -> str:
        if self.pool_counts is None:
            return "off"
        hits, claims, discarded = (self.pool_counts[k] for k in ("hits", "claims", "discarded"))
        return f"{100 * hits / claims:.0f}% hits, {discarded:.0f} discarded" if claims else "-"


@dataclass
class Result:
    name: str
    drive: Drive
    audit: Audit | None = None
    costs: Costs | None = None
    failures: int = 0  # raw docker-py: runs that raised

    @property
    def rate(self) -> float:
        return self.drive.finished / self.drive.elapsed_s if self.drive.elapsed_s else 0.0

    @property
    def lost(self) -> int:
        if self.audit is None:
            return self.failures
        return self.audit.lost  # covers the executions a client gave up waiting for

    @property
    def not_completed(self) -> int:
        return 0 if self.audit is None else self.audit.not_completed  # a wrong output is reported apart



# --- rounds ------------------------------------------------------------------------------------

def merge(name: str, parts: list[Result]) -> Result:
    """One setup's rounds as one result: counts added, the time of each round's timed phase
    added (so the rate is all executions over all timed seconds), latencies pooled, and the
    per-execution costs averaged with each round weighted by its executions."""
    drive = Drive()
    for part in parts:
        d = part.drive
        drive.elapsed_s += d.elapsed_s
        drive.latencies += d.latencies
        drive.accepted += d.accepted
        drive.statuses.update(d.statuses)
        drive.refused.update(d.refused)
        drive.wrong_output += d.wrong_output
        drive.unfinished += d.unfinished
        drive.max_stream = max(drive.max_stream, d.max_stream)
        drive.stream_samples += d.stream_samples
    result = Result(name, drive, failures=sum(p.failures for p in parts))
    audits = [(i, p.audit) for i, p in enumerate(parts, start=1) if p.audit is not None]
    if audits:
        by_status: collections.Counter[str] = collections.Counter()
        error_types: collections.Counter[str] = collections.Counter()
        for _, a in audits:
            by_status.update(a.by_status)
            error_types.update(a.error_types)
        result.audit = Audit(dict(by_status), dict(error_types),
                             missing=sum(a.missing for _, a in audits),
                             unreceipted=sum(a.unreceipted for _, a in audits),
                             extra_rows=sum(a.extra_rows for _, a in audits),
                             extra_not_final=sum(a.extra_not_final for _, a in audits),
                             problems=[f"round {i}: {problem}" for i, a in audits for problem in a.problems],
                             reruns=sum(a.reruns for _, a in audits))
    weighted = [(p.costs, max(1, p.drive.finished)) for p in parts if p.costs is not None]
    if weighted:
        result.costs = _merge_costs(weighted)
    return result


def _merge_costs(weighted: list[tuple[Costs, int]]) -> Costs:
    total = sum(n for _, n in weighted)
    costs = Costs()
    for f in fields(Costs):
        if isinstance(getattr(costs, f.name), float):  # the per-execution figures
            setattr(costs, f.name, sum(getattr(c, f.name) * n for c, n in weighted) / total)
    statements: dict[str, list[float]] = {}
    for c, n in weighted:
        for query, calls, rows, writes in c.statements:
            entry = statements.setdefault(query, [0.0, 0.0, float(writes)])
            entry[0] += calls * n / total
            entry[1] += rows * n / total
    costs.statements = sorted(((q, calls, rows, bool(w)) for q, (calls, rows, w) in statements.items()),
                              key=lambda s: -s[1])
    for c, n in weighted:
        for table, values in c.rows.items():
            before = costs.rows.get(table, (0.0, 0.0, 0.0))
            costs.rows[table] = tuple(b + v * n / total for b, v in zip(before, values, strict=True))  # type: ignore[assignment]
        for command, calls in c.redis.items():
            costs.redis[command] = costs.redis.get(command, 0.0) + calls * n / total
    counts = [c.pool_counts for c, _ in weighted]
    if all(count is not None for count in counts):
        costs.pool_counts = {k: sum(count[k] for count in counts if count) for k in ("hits", "claims", "discarded")}
    return costs


def print_rounds(rounds: list[list[Result]]) -> None:
    """Each round's rates, and each setup's ratio to the raw docker-py measured in that round."""
    names = [r.name for r in rounds[0]]
    print("\nround by round (exec/s; in brackets, the ratio to that round's raw docker-py):\n")
    print("| round | " + " | ".join(names) + " |")
    print("|-------|" + "|".join("-" * (len(n) + 2) for n in names) + "|")
    for i, results in enumerate(rounds, start=1):
        raw = results[0].rate
        cells = [f"{raw:.2f}"] + [f"{r.rate:.2f} ({r.rate / raw:.2f}x)" if raw else f"{r.rate:.2f}"
                                  for r in results[1:]]
        print(f"| {i:5d} | " + " | ".join(cells) + " |")


# --- output --------------------------------------------------------------------------------------

def table_row(result: Result, reference: float) -> str:
    samples = result.drive.latencies
    p50, p95, p99 = ((statistics.median(samples) * 1000, percentile(samples, 95) * 1000,
                      percentile(samples, 99) * 1000) if samples else (float("nan"),) * 3)
    ratio = result.rate / reference if reference else float("nan")
    return (f"| {result.name:<13} | {result.drive.finished:10d} | {result.rate:6.2f} | {ratio:15.2f}x |"
            f" {p50:7.1f} | {p95:7.1f} | {p99:7.1f} | {result.lost:4d} | {result.not_completed:13d} |")


def print_costs(results: list[Result]) -> None:
    print("\nper timed execution (background work by the clock included):\n")
    print("| setup         | PG xacts | PG stmts | PG writes | rows ins/upd/del | WAL KiB | DB KiB "
          "| Redis cmds | max stream | containers | pool | executor CPU ms (api) | engine CPU ms | bench CPU ms |")
    print("|---------------|----------|----------|-----------|------------------|---------|--------"
          "|------------|------------|------------|------|-----------------------|---------------|--------------|")
    for result in results:
        c = result.costs
        assert c is not None
        if result.audit is None:
            print(f"| {result.name:<13} | - | - | - | - | - | - | - | - | {c.containers_started:.2f} | - | - |"
                  f" {c.engine_cpu_ms:.1f} | {c.bench_cpu_ms:.1f} |")
            continue
        stmts = sum(s[1] for s in c.statements)
        writes = sum(s[1] for s in c.statements if s[3])
        ins, upd, dele = (sum(r[i] for r in c.rows.values()) for i in range(3))
        print(f"| {result.name:<13} | {c.xacts:8.2f} | {stmts:8.2f} | {writes:9.2f} | {ins:4.2f} / {upd:4.2f} / "
              f"{dele:4.2f} | {c.wal_bytes / 1024:7.2f} | {c.db_bytes / 1024:6.2f} | {sum(c.redis.values()):10.2f} |"
              f" {result.drive.max_stream:10d} | {c.containers_started:10.2f} | {c.pool} |"
              f" {c.executor_cpu_ms:6.1f} ({c.api_cpu_ms:.1f}) | {c.engine_cpu_ms:13.1f} | {c.bench_cpu_ms:12.1f} |")
    for result in results:
        c = result.costs
        if result.audit is None or c is None:
            continue
        print(f"\n{result.name}: rows written per execution, by table (inserted / updated / deleted):")
        for table, (ins, upd, dele) in sorted(c.rows.items()):
            print(f"  {table:<22} {ins:5.2f} / {upd:5.2f} / {dele:5.2f}")
        if c.statements:
            print(f"{result.name}: PostgreSQL statements per execution (calls, rows; W = writes rows):")
            for query, calls, rows, writes in c.statements:
                if calls >= 0.005:
                    print(f"  {calls:6.2f} {rows:6.2f} {'W' if writes else ' '} {query[:110]}")
        print(f"{result.name}: Redis commands per execution: "
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(c.redis.items(), key=lambda kv: -kv[1])))


