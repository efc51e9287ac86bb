"""Retention of execution bodies (EXECUTOR_RETENTION_S, docs/retention.md): past it a final
execution's input, output, stdin, stdout and log are deleted in the background, its record
says so, its bodies answer 410, and its receipt and log inclusion still prove what ran."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from typing import Any

import asyncpg
import pytest

from executor.errors import ConfigurationError
from executor.executions.retention import BodyRetention
from executor.receipts import merkle
from executor.records.executions import FINAL_STATUSES, encode_input
from executor.settings import load_settings
from executor.storage.retention import DUE
from executor.sweeps import sweep_interval_s
from tests.conftest import Api, ServiceProcess, serving
from tests.observability.promtext import parse
from tests.receipts.outside import verify_independently

PROBLEM = "urn:executor:problem:"
BODY_ROUTES = ("logs", "input", "stdout")


# Pure logic: the setting and the sweep's cadence.

@pytest.mark.parametrize(("raw", "expected"), [(None, 0.0), ("0", 0.0), ("2", 2.0), ("86400", 86400.0),
                                               ("2592000.5", 2592000.5)])
def test_the_retention_setting_reads_seconds_and_defaults_to_keeping_for_ever(raw: str | None,
                                                                               expected: float) -> None:
    settings = load_settings({} if raw is None else {"EXECUTOR_RETENTION_S": raw})
    assert settings.retention_s == expected


@pytest.mark.parametrize("raw", ["-1", "0.5", "nan", "inf", "1e12", "a week", ""])
def test_a_bad_retention_is_refused_at_start(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="EXECUTOR_RETENTION_S"):
        load_settings({"EXECUTOR_RETENTION_S": raw})


def test_the_sweep_runs_a_tenth_of_the_retention_apart_within_bounds() -> None:
    assert sweep_interval_s(2) == 0.5  # the floor
    assert sweep_interval_s(100) == 10
    assert sweep_interval_s(30 * 86400) == 60  # the ceiling: at most a minute late
    assert not BodyRetention(None, 0).enabled  # type: ignore[arg-type]  # 0: nothing is ever started


def test_the_sweep_takes_exactly_the_final_statuses() -> None:
    # The literal list is there for the partial index (migration 0010): it must stay the final set.
    listed = DUE.split("status IN (", 1)[1].split(")", 1)[0]
    assert {name.strip(" '") for name in listed.split(",")} == set(FINAL_STATUSES)


# End to end.

async def _until(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = await predicate()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {timeout_s} s: {what}")


async def _deleted(api: Api, execution_id: str) -> dict[str, Any] | None:
    record = await api.execution(execution_id)
    return record if record["bodies_deleted_at"] is not None else None


async def _verify(api: Api, bundle: dict[str, Any], stdin: bytes, stdout: bytes) -> dict[str, Any]:
    status, report, _ = await api.as_token(None).post("/v1/receipts/verify", json={
        "receipt": bundle, "input_base64": base64.b64encode(stdin).decode(),
        "output_base64": base64.b64encode(stdout).decode()})
    assert status == 200, report
    return report


async def test_past_the_retention_bodies_go_and_the_receipt_still_proves_them(postgres, redis_server, images) -> None:
    async with serving(postgres, redis_server, "retention", redis_db="6", retention_s="2") as (svc, api):
        db = await asyncpg.connect(svc.env["EXECUTOR_DATABASE_URL"])
        try:
            await _bodies_deleted_past_the_retention(svc, api, db)
        finally:
            await db.close()


async def _bodies_deleted_past_the_retention(svc: ServiceProcess, api: Api, db: asyncpg.Connection) -> None:
    sleeper = await api.register(["sleep", "60"], limits={"timeout_s": 120})
    status, live, _ = await api.post("/v1/executions", json={"agent_id": sleeper, "input": {"n": "live"}})
    assert status == 202, live
    await _until(lambda: _running(api, live["id"]), 20, "the sleeper runs")
    # Even with a finish time long past (set by hand), an execution that is not final keeps its bodies.
    await db.execute("UPDATE executions SET finished_at = now() - interval '1 day' WHERE id = $1",
                     uuid.UUID(live["id"]))

    echo = await api.register(["sh", "-c", "cat; echo 'kept for a while' >&2"])
    value = {"text": "private — ünïcödé", "n": 7}
    record = await api.run(echo, value)
    assert record["status"] == "COMPLETED" and record["output"] == value and record["bodies_deleted_at"] is None
    bundle_before = await _bundle(api, record["id"])
    refused = await api.register(["cat"], output_schema={"type": "object", "required": ["missing"]})
    failed = await api.run(refused, {"secret": "quoted by the violations"})
    assert failed["error"]["type"] == "output_invalid" and failed["error"]["violations"], failed

    # The holder of the input knows its exact bytes; `cat` printed them back.
    stdin = stdout = encode_input(value)

    deleted = await _until(lambda: _deleted(api, record["id"]), 20, "the bodies are deleted")
    assert deleted["input"] is None and deleted["output"] is None
    assert deleted["status"] == "COMPLETED" and deleted["usage"] == record["usage"]  # the rest of the record stays
    assert deleted["usage"]["input_bytes"] == len(stdin) and deleted["usage"]["output_bytes"] == len(stdout)
    deleted_failure = await _until(lambda: _deleted(api, failed["id"]), 10, "the failure's bodies are deleted")
    assert deleted_failure["error"] == {"type": "output_invalid",  # the violations quoted the output
                                        "detail": failed["error"]["detail"]}
    for route in BODY_ROUTES:
        status, problem, headers = await api.get(f"/v1/executions/{record['id']}/{route}")
        assert status == 410 and headers["Content-Type"].startswith("application/problem+json"), (route, problem)
        assert problem["type"] == PROBLEM + "execution_bodies_deleted" and record["id"] in problem["detail"]
    status, page, _ = await api.get(f"/v1/executions?agent_id={echo}")
    assert status == 200 and page["items"][0]["bodies_deleted_at"] == deleted["bodies_deleted_at"]

    row = await db.fetchrow("SELECT input, output, stdin, raw_output, log, error_violations FROM executions"
                            " WHERE id = $1", uuid.UUID(record["id"]))
    assert dict(row) == dict.fromkeys(row.keys())
    assert await db.fetchval("SELECT count(*) FROM receipts WHERE execution_id = $1", uuid.UUID(record["id"])) == 1

    # The receipt is the one issued at the finish, and still proves the bytes its holder kept.
    bundle = await _bundle(api, record["id"])
    assert bundle["envelope"] == bundle_before["envelope"]
    statement = json.loads(base64.b64decode(bundle["envelope"]["payload"]))
    report = await _verify(api, bundle, stdin, stdout)
    assert report["valid"] is True, report
    tampered = await _verify(api, bundle, encode_input({**value, "n": 8}), stdout)
    assert [f["reason"] for f in tampered["failures"]] == ["input_hash_mismatch"]
    status, jwks, _ = await api.as_token(None).get("/v1/keys")
    assert verify_independently(bundle, jwks, stdin=stdin, stdout=stdout)["execution_id"] == record["id"]

    # The log still holds its leaf: an inclusion proof against a head signed after the deletion.
    await api.run(echo, {"after": True})
    status, head, _ = await api.as_token(None).get("/v1/log/head")
    assert status == 200
    head_statement = json.loads(base64.b64decode(head["payload"]))
    assert head_statement["tree_size"] > statement["log_index"]
    status, proof, _ = await api.as_token(None).get(
        f"/v1/log/proof/inclusion?index={statement['log_index']}&size={head_statement['tree_size']}")
    assert status == 200, proof
    leaf = merkle.leaf_hash(base64.b64decode(bundle["envelope"]["payload"]))
    hashes = [bytes.fromhex(h) for h in proof["hashes"]]
    assert merkle.verify_inclusion(leaf, statement["log_index"], head_statement["tree_size"], hashes,
                                   bytes.fromhex(head_statement["root_hash"]))

    # The execution still running was never touched.
    running = await api.execution(live["id"])
    assert running["status"] == "RUNNING" and running["bodies_deleted_at"] is None and running["input"] == {"n": "live"}
    assert await api.get_bytes(f"/v1/executions/{live['id']}/input") == encode_input({"n": "live"})
    status, _, _ = await api.post(f"/v1/executions/{live['id']}/cancel")
    assert status in (200, 202)

    status, text, _ = await api.get("/metrics")
    assert status == 200
    assert parse(text.decode()).value("executor_execution_bodies_deleted_total") >= 2

    # Each sweep's selection is an index scan of the partial index, not a walk of every execution.
    await db.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in await db.fetch(
        f"EXPLAIN SELECT id FROM executions WHERE {DUE} ORDER BY finished_at LIMIT $2", 2.0, 500))
    assert "executions_bodies_due" in plan, plan


async def test_with_no_retention_nothing_is_deleted(api: Api, service: ServiceProcess) -> None:
    """The default (EXECUTOR_RETENTION_S unset): however long ago an execution finished, its bodies stay."""
    agent_id = await api.register(["sh", "-c", "cat; echo still here >&2"])
    record = await api.run(agent_id, {"kept": True})
    assert record["status"] == "COMPLETED", record
    db = await asyncpg.connect(service.env["EXECUTOR_DATABASE_URL"])
    try:
        await db.execute("UPDATE executions SET finished_at = now() - interval '3650 days' WHERE id = $1",
                         uuid.UUID(record["id"]))
    finally:
        await db.close()
    await asyncio.sleep(1.5)  # three sweeps' worth at the shortest interval, had one been running
    kept = await api.execution(record["id"])
    assert kept["bodies_deleted_at"] is None and kept["input"] == {"kept": True} and kept["output"] == {"kept": True}
    assert await api.get_bytes(f"/v1/executions/{record['id']}/input") == encode_input({"kept": True})
    assert await api.get_bytes(f"/v1/executions/{record['id']}/stdout") == encode_input({"kept": True})
    assert await api.get_bytes(f"/v1/executions/{record['id']}/logs") == b"still here\n"
    status, text, _ = await api.get("/metrics")
    assert status == 200 and parse(text.decode()).value("executor_execution_bodies_deleted_total") == 0


async def _running(api: Api, execution_id: str) -> bool:
    return (await api.execution(execution_id))["status"] == "RUNNING"


async def _bundle(api: Api, execution_id: str) -> dict[str, Any]:
    status, bundle, _ = await api.get(f"/v1/executions/{execution_id}/receipt")
    assert status == 200, bundle
    return bundle
