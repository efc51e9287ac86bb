"""Priority classes end to end (docs/scaling.md, "Priority classes"): who may ask for which,
the class on the record and in the stream, the order a busy worker takes them in, and a job
lost by Redis going back to its own class's stream from PostgreSQL."""

from __future__ import annotations

import asyncpg
import redis.asyncio as redis

from executor.executions.leases import Leases
from executor.queue.classes import PRIORITIES, JobQueues, split
from tests.api.conftest import final_record, wait_for
from tests.conftest import Api, make_service, started

FORBIDDEN = "urn:executor:problem:forbidden"
INVALID = "urn:executor:problem:request_invalid"


async def _submit(api: Api, agent_id: str, priority: str | None, **more: object) -> tuple[int, dict]:
    body: dict[str, object] = {"agent_id": agent_id, "input": {"p": priority}, **more}
    if priority is not None:
        body["priority"] = priority
    status, record, _ = await api.post("/v1/executions", json=body)
    return status, record


async def test_who_may_ask_for_which_class(api: Api) -> None:
    agent_id = await api.register(["cat"])
    plain_service = await api.new_token("service")
    status, issued, _ = await api.post("/v1/tokens", json={"role": "service", "subject": "prio-shop",
                                                            "priorities": ["low", "high", "normal"]})
    assert status == 201 and issued["priorities"] == ["high", "normal", "low"], issued  # kept in class order
    granted = api.as_token(issued["token"], "prio-shop")
    user = await api.new_token("user")
    await api.grant(user.subject, agent_id)

    allowed = {"operator": (api, PRIORITIES), "granted service": (granted, PRIORITIES),
               "service": (plain_service, ("normal", "low")), "user": (user, ("normal",))}
    for who, (client, classes) in allowed.items():
        for priority in PRIORITIES:
            status, record = await _submit(client, agent_id, priority)
            if priority in classes:
                assert status in (201, 202) and record["priority"] == priority, (who, priority, record)
            else:
                assert status == 403 and record["type"] == FORBIDDEN, (who, priority, record)
                assert repr(priority) in record["detail"], record
    status, record = await _submit(user, agent_id, None)
    assert status in (201, 202) and record["priority"] == "normal", record
    # Shown on each token; set by an operator only, on a service token only, with normal in it.
    status, page, _ = await api.get("/v1/tokens?subject=prio-shop")
    assert [t["priorities"] for t in page["items"]] == [["high", "normal", "low"]], page
    for body, expected in (({"role": "user", "subject": "u", "priorities": ["normal"]}, 422),
                           ({"role": "service", "subject": "s", "priorities": ["high"]}, 422),
                           ({"role": "service", "subject": "s", "priorities": ["urgent"]}, 422)):
        status, problem, _ = await api.post("/v1/tokens", json=body)
        assert status == expected and problem["type"] == INVALID, (body, problem)
        assert next(e["pointer"] for e in problem["errors"]).startswith("/priorities"), problem
    status, problem, _ = await plain_service.post("/v1/tokens", json={"role": "user", "subject": "u2",
                                                                       "priorities": ["normal"]})
    assert status == 403 and problem["type"] == FORBIDDEN, problem


async def test_a_busy_worker_takes_the_classes_in_turn(postgres, redis_server, images) -> None:
    svc = make_service(postgres, redis_server, "priorities", redis_db="9", worker_concurrency="1",
                       pool_enabled="false")
    async with started(svc) as api:
        sleeper = await api.register(["sh", "-c", "sleep 2; cat"])
        agent_id = await api.register(["cat"])
        status, busy = await _submit(api, sleeper, None)
        assert status == 202, busy
        await wait_for(lambda: _running(api, busy["id"]), timeout=30)
        ids = {}
        for priority in ("low", "low", "normal", "normal", "high", "high"):  # the lowest first, on purpose
            status, record = await _submit(api, agent_id, priority)
            assert status == 202, record
            ids[record["id"]] = priority
        finals = [await wait_for(lambda e=e: final_record(api, e), timeout=60) for e in ids]
        order = [ids[f["id"]] for f in sorted(finals, key=lambda f: f["started_at"])]
        # The sleeper was the worker's first take (turn 0); then the turn's places 1 to 5 and 0 again.
        assert order == ["high", "high", "normal", "normal", "low", "low"], order


async def _running(api: Api, execution_id: str) -> bool:
    return (await api.execution(execution_id))["status"] == "RUNNING"


async def test_a_job_redis_lost_goes_back_to_its_own_class(postgres, redis_server, images) -> None:
    svc = make_service(postgres, redis_server, "priorities_lost", redis_db="9")
    front = svc.sibling("priorities_lost_api", command="api")  # takes submissions; no worker runs them
    client = redis.Redis.from_url(svc.env["EXECUTOR_REDIS_URL"])
    db = await asyncpg.create_pool(svc.env["EXECUTOR_DATABASE_URL"], min_size=1, max_size=2)
    queues = JobQueues(client)
    try:
        await client.delete(*queues.streams.values())
        async with started(front) as api:
            agent_id = await api.register(["cat"])
            ids = {}
            for priority in PRIORITIES:
                status, record = await _submit(api, agent_id, priority)
                assert status == 202, record
                ids[record["id"]] = priority
        await client.delete(*queues.streams.values())  # Redis lost its data
        await queues.ensure_group()
        leases = Leases(db, client, queues, "test-reconciler", visibility_s=2, held=list, free_slots=lambda: 0,
                        take=_nothing)
        assert (await leases.reconcile(whole=True)).enqueued == 3
        entries = await queues.entries()
        assert {str(e.execution_id): split(e.entry_id)[0] for e in entries} == ids
        async with started(svc) as api:  # a worker runs them all
            for execution_id, priority in ids.items():
                final = await wait_for(lambda e=execution_id: final_record(api, e), timeout=60)
                assert final["status"] == "COMPLETED" and final["priority"] == priority, final
    finally:
        await db.close()
        await client.aclose()


async def _nothing(job: object) -> bool:
    return False
