"""The two-engine drill: two Docker engines on this machine, one worker beside each, one API;
one engine's host "dies" under load, and comes back.

    .venv/bin/python bench/two_engines.py [--total 300] [--concurrency 8] [--worker-concurrency 4]
                                          [--kill-at 0.33] [--visibility 30]

It starts its own PostgreSQL and Redis (under a temporary directory), a second `dockerd`
(tests/second_engine.py: its own socket, data root, exec root, pidfile and containerd, no
bridge, no iptables) holding a copy of the busybox task image, then one `executor api` and two
`executor worker` processes: worker 1 on the machine's engine, worker 2 on the second
(`DOCKER_HOST`). A user's entitlement of TOTAL uses is granted for a priced agent
(`sleep 0.5; cat`), and CONCURRENCY closed-loop clients submit TOTAL executions on the user's
behalf (`POST /v1/executions?wait=60` with an Idempotency-Key, then `GET …?wait=60` until final).

Once KILL_AT of the submissions are accepted and worker 2 runs a task, worker 2 and the second
dockerd (with its containerd) are killed with SIGKILL together, as when their host dies. The
jobs worker 2 held are reclaimed through the stream by worker 1 once they have gone
unrenewed for VISIBILITY seconds (`EXECUTOR_JOB_VISIBILITY_S`, 30 by default as shipped).

After the clients return, PostgreSQL is read directly:
  lost      an accepted submission whose execution is not COMPLETED, or has no receipt
  doubled   executions beyond one per submission, receipts beyond one per execution, log
            leaves beyond one per receipt
  charged   the entitlement's uses consumed and the sum of the costs, against TOTAL and
            TOTAL x price
Then the second engine starts again, its leftover containers of worker 2 are counted, worker 2
starts again under the same instance id, and what is left of them is counted.
Exit status 1 when anything is lost, doubled or charged other than once, or a leftover stays.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import docker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from executor.embedded import EmbeddedPostgres, EmbeddedRedis, free_port  # noqa: E402
from runtimes.base import EXECUTION_LABEL, INSTANCE_LABEL  # noqa: E402
from runtimes.images import build_images  # noqa: E402
from tests.conftest import Api, listed_containers, make_service, private_tmpdir  # noqa: E402
from tests.second_engine import SecondEngine, copy_images  # noqa: E402

PRICE = 5  # cents a call
USER = "kim"


@dataclass
class Drill:
    total: int
    concurrency: int
    kill_at: float
    accepted: dict[int, str]
    killed_at: float | None = None  # time.time() of the kill


async def submit_and_wait(service: Api, agent_id: str, n: int) -> str:
    body = {"agent_id": agent_id, "input": {"n": n}, "on_behalf_of": USER}
    while True:  # an Idempotency-Key: a retried submission is still one execution
        status, record, _ = await service.post("/v1/executions?wait=60", json=body,
                                               headers={"Idempotency-Key": f"drill-{n}"})
        if status not in (429, 502, 503):
            break
        await asyncio.sleep(0.2)
    if status not in (200, 201, 202):
        raise RuntimeError(f"submission {n}: {status} {record}")
    while record["status"] in ("PENDING", "RUNNING"):
        status, record, _ = await service.get(f"/v1/executions/{record['id']}?wait=60")
        if status != 200:
            raise RuntimeError(f"execution of submission {n}: {status} {record}")
    return str(record["id"])


async def load(drill: Drill, service: Api, agent_id: str) -> None:
    numbers = iter(range(drill.total))

    async def client() -> None:
        for n in numbers:
            drill.accepted[n] = await submit_and_wait(service, agent_id, n)

    await asyncio.gather(*(client() for _ in range(drill.concurrency)))


def task_containers(client: docker.DockerClient, instance_id: str, *, running_only: bool = False) -> list[Any]:
    return [c for c in listed_containers(client, running_only=running_only, label=f"{INSTANCE_LABEL}={instance_id}")
            if EXECUTION_LABEL in c["Labels"]]


async def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else private_tmpdir("executor-two-engines-")
    postgres = EmbeddedPostgres(workdir / "pg", port=free_port())
    redis_server = EmbeddedRedis(workdir / "redis", port=free_port())
    engine2 = SecondEngine(workdir / "engine2")
    engine1_client = docker.from_env()
    started_at = time.monotonic()
    front = worker1 = worker2 = None
    try:
        postgres.start()
        redis_server.start()
        engine2.start()
        image = build_images(engine1_client, ["busybox"], progress=lambda line: None)[0].tag
        with contextlib.closing(engine2.client()) as client:
            copy_images(engine1_client, client, [image])
        settings = dict(redis_db="1", worker_concurrency=str(args.worker_concurrency),
                        job_visibility_s=str(args.visibility), max_attempts="3", user_burst="100000",
                        user_rate_per_s="100000", service_burst="100000",
                        service_rate_per_s="100000", max_live_per_user="0", max_queue_depth="100000")
        front = make_service(postgres, redis_server, "drill", **settings)
        front.command = "api"
        front.env["EXECUTOR_CHECK_RESPONSES"] = "false"  # a test's safety net, not a deployment's
        worker1 = front.sibling("drill_w1", command="worker")
        worker2 = front.sibling("drill_w2", command="worker")
        worker2.env["DOCKER_HOST"] = engine2.url
        for process in (front, worker1, worker2):
            await asyncio.to_thread(process.start)
        db = await asyncpg.connect(front.env["EXECUTOR_DATABASE_URL"])
        engine2_client = engine2.client()
        drill = Drill(args.total, args.concurrency, args.kill_at, {})
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
                operator = Api(session, front.base_url, front.operator_token)
                service = await operator.new_token("service")
                status, agent, _ = await service.post("/v1/agents", json={
                    "name": f"drill-{uuid.uuid4().hex[:8]}", "image": image,
                    "command": ["sh", "-c", "sleep 0.5; cat"], "input_schema": {"type": "object"},
                    "output_schema": True, "pricing": {"currency": "EUR", "decimals": 2, "per_call": PRICE}})
                assert status == 201, agent
                await service.grant(USER, agent["id"], uses=args.total)
                load_started = time.monotonic()
                loader = asyncio.create_task(load(drill, service, agent["id"]))
                while not loader.done():  # the kill: a third in, with a task of worker 2 running
                    if (len(drill.accepted) >= args.kill_at * args.total
                            and task_containers(engine2_client, worker2.instance_id, running_only=True)):
                        held = await db.fetchval("SELECT count(*) FROM executions WHERE status = 'RUNNING'"
                                                 " AND worker = $1", worker2.instance_id)
                        worker2.stop("KILL")
                        await asyncio.to_thread(engine2.kill)
                        drill.killed_at = time.time()
                        print(f"killed worker 2 and engine 2 after {len(drill.accepted)} finished executions,"
                              f" {held} RUNNING on worker 2", flush=True)
                        break
                    await asyncio.sleep(0.05)
                await loader
                load_wall = time.monotonic() - load_started
            report = await count(db, drill, worker1.instance_id, worker2.instance_id)
            report["load wall time (s)"] = f"{load_wall:.1f}"
            report["executions/s (whole load)"] = f"{args.total / load_wall:.2f}"

            # The host comes back: first its engine (worker 2's containers are still there), then worker 2.
            await asyncio.to_thread(engine2.start)
            left = {c["Id"] for c in listed_containers(engine2_client, label=f"{INSTANCE_LABEL}={worker2.instance_id}")}
            left_tasks = len(task_containers(engine2_client, worker2.instance_id))
            await asyncio.to_thread(worker2.start)
            still = {c["Id"] for c in listed_containers(engine2_client)} & left
            report["worker 2's containers on engine 2 after it restarted (tasks + pre-started)"] = \
                f"{len(left)} ({left_tasks} + {len(left) - left_tasks})"
            report["of them left after worker 2 started again"] = str(len(still))
        finally:
            await db.close()
            engine2_client.close()
        report["drill wall time (s)"] = f"{time.monotonic() - started_at:.1f}"
        print_table(report)
        failed = (report["lost"] != "0" or report["doubled"] != "0" or not report["charged once"].startswith("yes")
                  or still)
        return 1 if failed else 0
    finally:
        for process in (worker2, worker1, front):
            if process is not None:
                process.stop()
        engine2.stop()
        engine2.remove()
        engine1_client.close()
        redis_server.stop()
        postgres.stop()
        if not args.workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


async def count(db: asyncpg.Connection, drill: Drill, worker1: str, worker2: str) -> dict[str, str]:
    total = drill.total
    by_worker = dict(await db.fetch("SELECT worker, count(*) FROM executions GROUP BY worker"))
    executions = await db.fetchval("SELECT count(*) FROM executions")
    completed_with_receipt = await db.fetchval(
        "SELECT count(*) FROM executions e WHERE e.status = 'COMPLETED'"
        " AND EXISTS (SELECT 1 FROM receipts r WHERE r.execution_id = e.id)")
    receipts = await db.fetchval("SELECT count(*) FROM receipts")
    receipted = await db.fetchval("SELECT count(DISTINCT execution_id) FROM receipts")
    leaves = await db.fetchval("SELECT size FROM log_state")
    uses = await db.fetchval("SELECT uses_consumed FROM entitlements WHERE user_subject = $1", USER)
    charged = await db.fetchval("SELECT coalesce(sum((cost->>'amount')::int), 0) FROM executions")
    moved = await db.fetch("SELECT worker, started_at, finished_at FROM executions WHERE attempts > 1")
    last_other = await db.fetchval("SELECT max(finished_at) FROM executions WHERE attempts = 1")
    # How long the cut-off executions waited: reclaimed once unrenewed for the visibility timeout.
    def after_kill(moment: Any) -> str:
        return "-" if moment is None or drill.killed_at is None else f"{moment.timestamp() - drill.killed_at:.1f}"

    restarts = sorted(r["started_at"] for r in moved)
    lost = total - completed_with_receipt
    doubled = (executions - len(set(drill.accepted.values()))) + (receipts - receipted) + (leaves - receipts)
    charged_once = uses == total and charged == PRICE * total
    return {
        "submissions accepted": f"{len(drill.accepted)} of {total}",
        "finished by worker 1 (engine 1)": str(by_worker.get(worker1, 0)),
        "finished by worker 2 (engine 2)": str(by_worker.get(worker2, 0)),
        "reclaimed and run again (attempts > 1)": f"{len(moved)}, finished by " + ", ".join(
            sorted({"worker 1" if r["worker"] == worker1 else str(r["worker"]) for r in moved})),
        "reclaimed ones started again, after the kill (s)":
            f"{after_kill(restarts[0])} to {after_kill(restarts[-1])}" if restarts else "-",
        "last of the others finished, after the kill (s)": after_kill(last_other),
        "lost": str(lost),
        "doubled": str(doubled),
        "receipts / log leaves": f"{receipts} / {leaves}",
        "charged once": f"{'yes' if charged_once else 'NO'}: {uses} uses of {total}, {charged} cents"
                        f" = {total} x {PRICE}" + ("" if charged == PRICE * total else " (NOT equal)"),
    }


def print_table(report: dict[str, str]) -> None:
    width = max(len(k) for k in report)
    print(f"| {'what':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for key, value in report.items():
        print(f"| {key:<{width}} | {value} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop clients")
    parser.add_argument("--worker-concurrency", type=int, default=4, help="slots of each worker")
    parser.add_argument("--kill-at", type=float, default=1 / 3, help="fraction of submissions before the kill")
    parser.add_argument("--visibility", type=float, default=30.0, help="EXECUTOR_JOB_VISIBILITY_S")
    parser.add_argument("--workdir", help="keep everything under this directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
