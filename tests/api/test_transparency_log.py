"""The transparency log end to end: several workers appending at once, and an auditor that
catches a log rewritten behind a head it kept."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from executor.embedded import free_port
from executor.receipts import merkle
from executor.receipts.jwk import parse_key_set
from executor.receipts.verify import verify_bundle
from executor.storage.database import _init_connection
from tests.api.test_receipts import public_keys, receipt_of
from tests.conftest import (
    REPO,
    Api,
    ServiceProcess,
    make_service,
    private_tmpdir,
    serving,
)
from tests.receipts.outside import verify_independently


def sibling(svc: ServiceProcess, name: str) -> ServiceProcess:
    """Another `executor serve` on the same database and Redis db: one more worker of the same fleet."""
    state_dir = private_tmpdir(f"executor-test-{name}-")
    port, token = free_port(), "exe_test_" + secrets.token_urlsafe(16)
    instance_id = f"test-{name}-{uuid.uuid4().hex[:8]}"
    env = dict(svc.env, EXECUTOR_PORT=str(port), EXECUTOR_STATE_DIR=str(state_dir), EXECUTOR_BOOTSTRAP_TOKEN=token,
               EXECUTOR_INSTANCE_ID=instance_id)
    return ServiceProcess(env, f"http://127.0.0.1:{port}", token, instance_id, state_dir / "service.log")


async def test_several_workers_finishing_at_once_leave_no_gap_and_no_duplicate(postgres, redis_server, images):
    first = make_service(postgres, redis_server, "fleet", redis_db="4", log_head_interval_s="0.2")
    fleet = [first, sibling(first, "fleet-b"), sibling(first, "fleet-c")]
    for svc in fleet:
        svc.start()
    try:
        async with aiohttp.ClientSession() as session:
            apis = [Api(session, svc.base_url, svc.operator_token) for svc in fleet]
            agent_id = await apis[0].register(["cat"])
            records = await asyncio.gather(*(apis[n % 3].run(agent_id, {"n": n}, wait=60) for n in range(60)))
            assert {r["status"] for r in records} == {"COMPLETED"}, [r for r in records if r["status"] != "COMPLETED"]

            db = await asyncpg.connect(first.env["EXECUTOR_DATABASE_URL"])
            try:
                indices = [r["log_index"] for r in await db.fetch("SELECT log_index FROM receipts ORDER BY log_index")]
                leaves = await db.fetchval("SELECT count(*) FROM log_nodes WHERE level = 0")
                size = await db.fetchval("SELECT size FROM log_state")
                workers = {r["worker"] for r in await db.fetch("SELECT DISTINCT worker FROM executions")}
                signers = await db.fetchval("SELECT count(DISTINCT keyid) FROM receipts")
            finally:
                await db.close()
            assert indices == list(range(60)) and leaves == 60 and size == 60
            assert len(workers) >= 2 and signers == len(workers)  # each worker signs with its host's own key

            jwks = await public_keys(apis[0])
            assert len(jwks["keys"]) == 3
            keys = parse_key_set(jwks)
            for record in records:
                bundle = await receipt_of(apis[1], record["id"])
                verify_independently(bundle, jwks)
                assert verify_bundle(bundle, keys).valid
    finally:
        for svc in fleet:
            svc.stop()


async def rewrite_history(database_url: str) -> None:
    """What a dishonest operator would do: change leaf 0 and rebuild the whole tree over it."""
    db = await asyncpg.connect(database_url)
    await _init_connection(db)
    try:
        async with db.transaction():
            payloads = [r["payload"] for r in await db.fetch("SELECT payload FROM receipts ORDER BY log_index")]
            payloads[0] = payloads[0].replace(b'"status":"COMPLETED"', b'"status":"FAILED"')
            frontier: list[bytes] = []
            nodes: list[tuple[int, int, bytes]] = []
            for index, payload in enumerate(payloads):
                frontier, completed = merkle.append(frontier, index, merkle.leaf_hash(payload))
                nodes += completed
            await db.execute("UPDATE receipts SET payload = $1 WHERE log_index = 0", payloads[0])
            await db.execute("DELETE FROM log_nodes")
            await db.execute("DELETE FROM tree_heads")
            await db.executemany("INSERT INTO log_nodes (level, idx, hash) VALUES ($1, $2, $3)", nodes)
            await db.execute("UPDATE log_state SET frontier = $1", frontier)
    finally:
        await db.close()


def audit(svc: ServiceProcess, state: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "executor", "log", "audit", "--url", svc.base_url,
                           "--state", str(state), *more], env=svc.env, cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def audit_rounds(svc: ServiceProcess, state: Path, *more: str) -> tuple[int, list[dict[str, Any]]]:
    """`log audit --json`: its exit code and its rounds, one JSON object a line and nothing else."""
    done = audit(svc, state, "--json", *more)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


async def test_an_auditor_catches_a_log_rewritten_behind_its_head(postgres, redis_server, images,
                                                                   tmp_path: Path) -> None:
    async with serving(postgres, redis_server, "audit", redis_db="5") as (svc, api):
        await audit_then_rewrite(svc, api, tmp_path)


async def audit_then_rewrite(svc: ServiceProcess, api: Api, tmp_path: Path) -> None:
    state = tmp_path / "kept-head.json"
    agent_id = await api.register(["cat"])
    for n in range(3):
        await api.run(agent_id, {"n": n})
    first = audit(svc, state)
    assert first.returncode == 0 and "kept as the first head" in first.stdout, first.stdout + first.stderr
    for n in range(4):
        await api.run(agent_id, {"n": n})
    second = audit(svc, state)
    assert second.returncode == 0 and "extends the kept head of size 3" in second.stdout, second.stdout + second.stderr
    code, rounds = audit_rounds(svc, state, "--rounds", "2", "--interval", "0.1")
    assert code == 0 and [r["round"] for r in rounds] == [1, 2], rounds
    assert all(r["valid"] and r["tree_size"] == 7 and r["kept_tree_size"] == 7 and r["failures"] == []
               for r in rounds), rounds

    await rewrite_history(svc.env["EXECUTOR_DATABASE_URL"])
    forked = audit(svc, state)  # same size, another root
    assert forked.returncode == 1 and "head_mismatch" in forked.stdout, forked.stdout + forked.stderr
    code, rounds = audit_rounds(svc, state, "--rounds", "3")  # the first bad round ends the audit
    assert code == 1 and len(rounds) == 1 and not rounds[0]["valid"], rounds
    assert [f["reason"] for f in rounds[0]["failures"]] == ["head_mismatch"], rounds
    await api.run(agent_id, {"n": "after"})
    rewritten = audit(svc, state)  # a bigger tree that does not extend the kept one
    assert rewritten.returncode == 1 and "consistency_proof_invalid" in rewritten.stdout, rewritten.stdout
    assert "rewritten behind the earlier head" in rewritten.stdout
