"""Batches end to end: POST /v1/executions/batch judges each item as POST /v1/executions would
judge it alone (entitlement use, rate limits, idempotency key), in one request.

Most tests run against an API-only process (no worker): what a batch accepts stays PENDING, so a
100-item batch loads nothing. ?wait= needs a worker: that test uses the marketplace service."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis
from jsonschema import Draft202012Validator

from executor.api.contract import openapi
from executor.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.conftest import Api, ServiceProcess, make_service

PROBLEM = "urn:executor:problem:"
BATCH = "/v1/executions/batch"
_ANSWER = Draft202012Validator(
    {"$ref": "#/components/schemas/BatchResult", "components": openapi.document()["components"]},
    format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def front(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, images: dict[str, str]
          ) -> Iterator[ServiceProcess]:
    """`executor api` alone on its own database and Redis db, with the marketplace's generous
    rate limits; its Redis db (the PENDING jobs nobody ran) is emptied after, for the next user."""
    svc = make_service(postgres, redis_server, "batch", redis_db="6", user_burst="1000", user_rate_per_s="1000",
                       service_burst="1000", service_rate_per_s="1000", max_live_per_user="200")
    svc.command = "api"
    svc.start()
    yield svc
    svc.stop()
    client = redis.Redis.from_url(svc.env["EXECUTOR_REDIS_URL"])
    client.flushdb()
    client.close()


@pytest.fixture
async def operator(front: ServiceProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, front.base_url, front.operator_token)


async def _batch(api: Api, items: list[dict[str, Any]], query: str = "") -> list[dict[str, Any]]:
    """The answers to one batch request, checked against the contract's BatchResult."""
    status, answer, _ = await api.post(BATCH + query, json={"items": items})
    assert status == 200, answer
    errors = [error.message for error in _ANSWER.iter_errors(answer)]
    assert errors == [], errors
    assert [item["index"] for item in answer["items"]] == list(range(len(items)))
    return list(answer["items"])


async def _entitlement(api: Api, entitlement_id: str, user: str) -> dict[str, Any]:
    status, page, _ = await api.get(f"/v1/entitlements?user={user}")
    assert status == 200, page
    (found,) = [e for e in page["items"] if e["id"] == entitlement_id]
    return found


async def _execution_ids(api: Api, query: str) -> list[str]:
    status, page, _ = await api.get(f"/v1/executions?limit=100&{query}")
    assert status == 200 and page["next_cursor"] is None, page
    return [record["id"] for record in page["items"]]


async def _service_and_entitled_user(operator: Api, *, uses: int) -> tuple[Api, Api, str, dict[str, Any]]:
    """A service, its `cat` agent, and a user granted `uses` runs of it."""
    service = await operator.new_token("service")
    user = await operator.new_token("user")
    agent_id = await service.register(["cat"])
    return service, user, agent_id, await service.grant(user.subject, agent_id, uses=uses)


async def test_100_items_against_60_uses_accept_exactly_60_and_the_same_batch_again_changes_nothing(
        operator: Api) -> None:
    service, user, agent_id, granted = await _service_and_entitled_user(operator, uses=60)
    items = [{"agent_id": agent_id, "input": {"i": i}, "on_behalf_of": user.subject,
              "idempotency_key": f"order-{i}"} for i in range(100)]

    answers = await _batch(service, items)  # one request
    accepted, refused = answers[:60], answers[60:]
    assert {a["status"] for a in accepted} == {202} and {a["status"] for a in refused} == {403}
    assert {a["problem"]["type"] for a in refused} == {PROBLEM + "entitlement_used_up"}
    assert not any("execution" in a or a["replayed"] for a in refused)
    for answer in accepted:  # in order: the first 60 items took the 60 uses
        record = answer["execution"]
        assert record["input"] == {"i": answer["index"]} and record["status"] == "PENDING", record
        assert record["entitlement_id"] == granted["id"] and record["owner"] == f"user:{user.subject}"
        assert record["submitted_by"] == f"service:{service.subject}" and not answer["replayed"]
    ids = [a["execution"]["id"] for a in accepted]
    assert len(set(ids)) == 60
    after = await _entitlement(service, granted["id"], user.subject)
    assert after["uses_remaining"] == 0 and after["uses_consumed"] == 60 and after["state"] == "used_up"
    listed = await _execution_ids(service, f"user={user.subject}")
    assert listed == ids[::-1]  # created in the order given: newest first is the last item first

    again = await _batch(service, items)
    assert [a["execution"]["id"] for a in again[:60]] == ids
    assert all(a["replayed"] and a["status"] == 202 for a in again[:60])
    assert [(a["status"], a["problem"]["type"], a["replayed"]) for a in again[60:]] == \
        [(403, PROBLEM + "entitlement_used_up", False)] * 40
    assert await _execution_ids(service, f"user={user.subject}") == listed
    assert await _entitlement(service, granted["id"], user.subject) == after


async def test_a_refused_item_leaves_the_others_alone(operator: Api) -> None:
    service = await operator.new_token("service")
    user = await operator.new_token("user")
    agent_id = await service.register(["cat"], input_schema={"type": "object", "required": ["text"]})
    await service.grant(user.subject, agent_id, uses=10)
    ok = {"agent_id": agent_id, "input": {"text": "hello"}}
    answers = await _batch(user, [
        ok,
        {"agent_id": str(uuid.uuid4()), "input": {"text": "no such agent"}},
        {**ok, "on_behalf_of": "someone-else"},  # a user may not submit for another
        {"agent_id": agent_id, "input": {"no": "text"}},
        {**ok, "limits": {"memory_mb": 10**6}},
        {**ok, "input": {"text": "last"}},
    ])
    assert [a["status"] for a in answers] == [202, 404, 403, 422, 422, 202]
    assert [a.get("problem", {}).get("type") for a in answers] == [
        None, PROBLEM + "not_found", PROBLEM + "forbidden", PROBLEM + "input_invalid", PROBLEM + "limit_exceeded",
        None]
    assert answers[3]["problem"]["errors"] and answers[4]["problem"]["errors"][0]["pointer"] == "/limits/memory_mb"
    assert [a["execution"]["input"]["text"] for a in (answers[0], answers[5])] == ["hello", "last"]
    # Only the two accepted items took a use, and the user sees exactly those two.
    status, page, _ = await user.get("/v1/entitlements")
    assert status == 200 and page["items"][0]["uses_consumed"] == 2, page
    assert sorted(await _execution_ids(user, "")) == sorted(a["execution"]["id"] for a in (answers[0], answers[5]))


async def test_a_batch_that_breaks_the_contract_or_the_cap_is_refused_whole(operator: Api) -> None:
    user = await operator.new_token("user")
    agent_id = await operator.register(["cat"])
    await operator.grant(user.subject, agent_id)
    item = {"agent_id": agent_id, "input": {}}

    status, problem, _ = await user.post(BATCH, json={"items": [item] * 101})  # EXECUTOR_MAX_BATCH_ITEMS is 100
    assert status == 422 and problem["type"] == PROBLEM + "request_invalid", problem
    assert [e["pointer"] for e in problem["errors"]] == ["/items"]
    status, problem, _ = await user.post(BATCH, json={"items": []})
    assert status == 422 and [e["pointer"] for e in problem["errors"]] == ["/items"], problem
    status, problem, _ = await user.post(BATCH, json={"items": [item, {"agent_id": agent_id}]})
    assert status == 422 and [e["pointer"] for e in problem["errors"]] == ["/items/1/input"], problem
    status, problem, _ = await user.post(BATCH, json={"items": [{**item, "idempotency_key": ""}]})
    assert status == 422 and [e["pointer"] for e in problem["errors"]] == ["/items/0/idempotency_key"], problem
    status, problem, _ = await user.post(BATCH + "?wait=61", json={"items": [item]})
    assert status == 422 and [e["pointer"] for e in problem["errors"]] == ["?wait"], problem
    assert await _execution_ids(user, "") == []  # nothing of any of them was accepted

    answers = await _batch(user, [item] * 100)  # the cap itself is fine
    assert {a["status"] for a in answers} == {202}


async def test_keys_per_item_mean_what_the_idempotency_key_header_means(operator: Api) -> None:
    service = await operator.new_token("service")
    agent_id = await service.register(["cat"])
    body = {"agent_id": agent_id, "input": {"order": 1}}
    status, single, _ = await service.post("/v1/executions", json=body, headers={"Idempotency-Key": "k-single"})
    assert status == 202, single

    answers = await _batch(service, [
        {**body, "idempotency_key": "k-single"},  # the header's key and body: replays that execution
        {**body, "input": {"order": 2}, "idempotency_key": "k-single"},  # its key, another body
        {**body, "input": {"order": 3}, "idempotency_key": "k-twice"},
        {**body, "input": {"order": 3}, "idempotency_key": "k-twice"},  # repeated in the batch: the same one
        {**body, "input": {"order": 4}, "idempotency_key": "k-twice"},  # repeated with another body
        {**body, "input": {"order": 5}},
    ])
    assert [(a["status"], a["replayed"]) for a in answers] == [
        (202, True), (422, False), (202, False), (202, True), (422, False), (202, False)]
    assert answers[0]["execution"]["id"] == single["id"]
    assert answers[1]["problem"]["type"] == answers[4]["problem"]["type"] == PROBLEM + "idempotency_key_reused"
    assert answers[2]["execution"]["id"] == answers[3]["execution"]["id"]
    listed = await _execution_ids(service, f"agent_id={agent_id}")
    assert sorted(listed) == sorted([single["id"], answers[2]["execution"]["id"], answers[5]["execution"]["id"]])

    # And a batch's key, sent again as the header with the same body, replays the batch's execution.
    status, replayed, headers = await service.post("/v1/executions", json={**body, "input": {"order": 3}},
                                                   headers={"Idempotency-Key": "k-twice"})
    assert replayed["id"] == answers[2]["execution"]["id"] and headers["Idempotent-Replayed"] == "true"


async def test_wait_answers_the_items_that_end_in_time_with_their_final_record(market: Api) -> None:
    service = await market.new_token("service")
    user = await market.new_token("user")
    fast = await service.register(["cat"])
    slow = await service.register(["sh", "-c", "sleep 30; cat"])
    await service.grant(user.subject, fast, uses=2)
    await service.grant(user.subject, slow, uses=1)
    answers = await _batch(user, [{"agent_id": fast, "input": {"n": 1}}, {"agent_id": slow, "input": {}},
                                  {"agent_id": fast, "input": {"n": 2}}], query="?wait=6")
    assert [a["status"] for a in answers] == [201, 202, 201], answers
    assert [answers[i]["execution"]["output"] for i in (0, 2)] == [{"n": 1}, {"n": 2}]
    assert {answers[i]["execution"]["status"] for i in (0, 2)} == {"COMPLETED"}
    assert answers[1]["execution"]["status"] in ("PENDING", "RUNNING")
    status, cancelled, _ = await user.post(f"/v1/executions/{answers[1]['execution']['id']}/cancel")
    assert status in (200, 202), cancelled


async def test_racing_copies_of_a_keyed_batch_make_each_execution_once(operator: Api) -> None:
    service, user, agent_id, granted = await _service_and_entitled_user(operator, uses=10)
    items = [{"agent_id": agent_id, "input": {"i": i}, "on_behalf_of": user.subject,
              "idempotency_key": f"race-{i}"} for i in range(20)]

    copies = await asyncio.gather(*(_batch(service, items) for _ in range(5)))
    ids = [a["execution"]["id"] for a in copies[0][:10]]
    for answers in copies:  # every copy answers the same: the first 10 accepted once, the rest refused
        assert [a["execution"]["id"] for a in answers[:10]] == ids
        assert {a["problem"]["type"] for a in answers[10:]} == {PROBLEM + "entitlement_used_up"}
    assert sum(not a["replayed"] for answers in copies for a in answers[:10]) == 10
    assert sorted(await _execution_ids(service, f"user={user.subject}")) == sorted(ids)
    after = await _entitlement(service, granted["id"], user.subject)
    assert after["uses_consumed"] == 10 and after["uses_remaining"] == 0


async def test_the_live_cap_counts_each_item_and_a_throttled_item_says_when_to_retry(operator: Api) -> None:
    user = await operator.new_token("user")
    agent_id = await operator.register(["cat"])
    await operator.grant(user.subject, agent_id)
    items = [{"agent_id": agent_id, "input": {"i": i}} for i in range(100)]
    assert {a["status"] for a in await _batch(user, items)} == {202}  # nothing runs here: they stay PENDING
    assert {a["status"] for a in await _batch(user, items[:99])} == {202}
    answers = await _batch(user, items[:3])  # EXECUTOR_MAX_LIVE_PER_USER is 200: one more fits
    assert [a["status"] for a in answers] == [202, 429, 429], answers
    assert {(a["problem"]["type"], a["retry_after"]) for a in answers[1:]} == {
        (PROBLEM + "too_many_live_executions", 1)}
