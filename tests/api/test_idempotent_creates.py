"""Idempotency-Key on every creating POST besides POST /v1/executions (docs/idempotency.md):
agents, versions, tokens and attestations, end to end against real processes. A retry with the
same key replays the first answer and creates nothing; another body under the key is refused;
keys are per caller; a refused request keeps no key; two API processes on one database agree;
past EXECUTOR_IDEMPOTENCY_TTL_S the key is new and its stored answer is gone."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web

from executor.api.replay import REPLAYED, answer_to_keep, replayed
from executor.embedded import EmbeddedPostgres, EmbeddedRedis
from executor.replays import fingerprint
from executor.sweeps import sweep_interval_s
from tests.conftest import Api, ServiceProcess, make_service, operator_clients, serving, with_api_sibling

PROBLEM = "urn:executor:problem:"


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"create-{uuid.uuid4()}"}


def agent_body(name: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"name": name or f"idem-{uuid.uuid4().hex[:12]}", "image": "executor/busybox:latest",
            "command": ["cat"], "input_schema": {"type": "object"}, "output_schema": True, **fields}


def version_body(**fields: Any) -> dict[str, Any]:
    return {"image": "executor/busybox:latest", "command": ["cat"], "input_schema": {"type": "object"},
            "output_schema": True, **fields}


async def agents_named(api: Api, name: str) -> int:
    """How many agents in the whole list carry this name, page after page."""
    count, cursor = 0, None
    while True:
        status, page, _ = await api.get("/v1/agents?limit=100" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, page
        count += sum(1 for agent in page["items"] if agent["name"] == name)
        cursor = page["next_cursor"]
        if cursor is None:
            return count


async def tokens_of(api: Api, subject: str) -> list[dict[str, Any]]:
    status, page, _ = await api.get(f"/v1/tokens?subject={subject}&limit=100")
    assert status == 200, page
    return list(page["items"])


def assert_replay(first: tuple[int, Any, Any], again: tuple[int, Any, Any]) -> None:
    """`again` is `first` replayed: the same status and body, marked as a replay."""
    assert REPLAYED not in first[2]
    assert again[0] == first[0] and again[1] == first[1], (first, again)
    assert again[2].get(REPLAYED) == "true"


# Pure: the fingerprint a replay must match.

def test_the_fingerprint_is_the_method_path_and_canonical_body() -> None:
    body = {"name": "a", "limits": {"cpus": 1, "memory_mb": 64}, "input_schema": {"type": "object"}}
    same = {"input_schema": {"type": "object"}, "limits": {"memory_mb": 64, "cpus": 1}, "name": "a"}
    assert fingerprint("POST", "/v1/agents", body) == fingerprint("POST", "/v1/agents", same)
    assert len(fingerprint("POST", "/v1/agents", body)) == 32
    assert fingerprint("POST", "/v1/agents", body) != fingerprint("POST", "/v1/agents", {**body, "name": "b"})
    assert fingerprint("POST", "/v1/agents", body) != fingerprint("POST", "/v1/agents/x/versions", body)
    assert fingerprint("POST", "/v1/agents", body) != fingerprint("PUT", "/v1/agents", body)
    assert fingerprint("POST", "/v1/agents", None) != fingerprint("POST", "/v1/agents", {})
    assert fingerprint("POST", "/v1/x", {"text": "ünï"}) == fingerprint("POST", "/v1/x", {"text": "ünï"})


def test_only_a_success_with_its_body_in_hand_is_kept_and_replayed_as_it_was() -> None:
    response = web.Response(status=201, body=b'{"id": "a"}', content_type="application/json",
                            headers={"Location": "/v1/agents/a", "Cache-Control": "no-store"})
    answer = answer_to_keep(response)
    assert answer is not None and answer.status == 201 and answer.body == b'{"id": "a"}'
    assert answer.headers == {"Content-Type": "application/json", "Location": "/v1/agents/a",
                              "Cache-Control": "no-store"}
    again = replayed(answer)
    assert (again.status, again.body, again.content_type) == (201, b'{"id": "a"}', "application/json")
    assert again.headers["Location"] == "/v1/agents/a" and again.headers[REPLAYED] == "true"
    assert answer_to_keep(web.Response(status=422, body=b"{}")) is None
    assert answer_to_keep(web.StreamResponse(status=200)) is None
    assert sweep_interval_s(86400) == 60 and sweep_interval_s(10) == 1 and sweep_interval_s(0) == 0.5


# Agents.

async def test_registering_an_agent_twice_with_a_key_registers_it_once(api: Api) -> None:
    shop = await api.new_token("service")
    body, idem = agent_body(), key()
    first = await shop.post("/v1/agents", json=body, headers=idem)
    assert first[0] == 201, first[1]
    again = await shop.post("/v1/agents", json=body, headers=idem)
    assert_replay(first, again)
    assert again[2]["Location"] == first[2]["Location"] == f"/v1/agents/{first[1]['id']}"
    assert await agents_named(api, body["name"]) == 1

    # Another body under the key: refused, and nothing registered.
    other = agent_body()
    status, problem, _ = await shop.post("/v1/agents", json=other, headers=idem)
    assert status == 422 and problem["type"] == PROBLEM + "idempotency_key_reused", problem
    assert await agents_named(api, other["name"]) == 0

    # The same key from another caller is another request.
    rival = await api.new_token("service")
    status, theirs, headers = await rival.post("/v1/agents", json=other, headers=idem)
    assert status == 201 and REPLAYED not in headers and theirs["id"] != first[1]["id"], theirs
    # Without a key, nothing is replayed: the same name is taken.
    status, problem, _ = await shop.post("/v1/agents", json=body)
    assert status == 409 and problem["type"] == PROBLEM + "conflict", problem


async def test_a_refused_registration_keeps_no_key(api: Api) -> None:
    shop = await api.new_token("service")
    idem, name = key(), f"idem-{uuid.uuid4().hex[:12]}"
    status, problem, _ = await shop.post("/v1/agents", json=agent_body(name, image="executor/absent:never"),
                                         headers=idem)
    assert status == 422 and problem["type"] == PROBLEM + "image_not_found", problem
    status, agent, headers = await shop.post("/v1/agents", json=agent_body(name), headers=idem)
    assert status == 201 and REPLAYED not in headers, agent
    assert await agents_named(api, name) == 1


async def test_racing_registrations_with_one_key_register_one_agent(api: Api) -> None:
    shop = await api.new_token("service")
    body, idem = agent_body(), key()
    answers = await asyncio.gather(*(shop.post("/v1/agents", json=body, headers=idem) for _ in range(8)))
    created = [a for a in answers if a[0] == 201 and REPLAYED not in a[2]]
    assert len(created) == 1, [a[:2] for a in answers]
    for status, answer, _ in answers:
        if status == 409:  # the first was still running: retry later
            assert answer["type"] == PROBLEM + "conflict" and "Idempotency-Key" in answer["detail"], answer
        else:
            assert status == 201 and answer == created[0][1], answer
    assert_replay(created[0], await shop.post("/v1/agents", json=body, headers=idem))
    assert await agents_named(api, body["name"]) == 1


# Versions.

async def test_publishing_a_version_twice_with_a_key_publishes_it_once(api: Api) -> None:
    shop = await api.new_token("service")
    agent_id = await shop.register(["cat"])
    path = f"/v1/agents/{agent_id}/versions"
    idem = key()
    status, problem, _ = await shop.post(path, json=version_body(image="executor/absent:never"), headers=idem)
    assert status == 422 and problem["type"] == PROBLEM + "image_not_found", problem

    first = await shop.post(path, json=version_body(), headers=idem)
    assert first[0] == 201 and first[1]["version"] == 2, first[1]
    again = await shop.post(path, json=version_body(), headers=idem)
    assert_replay(first, again)
    assert again[2]["Location"] == f"{path}/2"

    status, problem, _ = await shop.post(path, json=version_body(command=["sh", "-c", "cat"]), headers=idem)
    assert status == 422 and problem["type"] == PROBLEM + "idempotency_key_reused", problem
    # The same key on another agent's path is another request too: refused as well.
    other_agent = await shop.register(["cat"])
    status, problem, _ = await shop.post(f"/v1/agents/{other_agent}/versions", json=version_body(), headers=idem)
    assert status == 422 and problem["type"] == PROBLEM + "idempotency_key_reused", problem

    # An operator (who may manage any agent) with the same key publishes a version of its own.
    status, theirs, headers = await api.post(path, json=version_body(), headers=idem)
    assert status == 201 and theirs["version"] == 3 and REPLAYED not in headers, theirs

    status, page, _ = await shop.get(path)
    assert [v["version"] for v in page["items"]] == [1, 2, 3]


# Tokens.

async def test_issuing_a_token_twice_with_a_key_issues_one(api: Api, service: ServiceProcess) -> None:
    shop = await api.new_token("service")
    subject = f"alice-{uuid.uuid4().hex[:8]}"
    idem = key()
    status, problem, _ = await shop.post("/v1/tokens", json={"role": "user", "subject": subject,
                                                             "expires_at": "2001-01-01T00:00:00Z"}, headers=idem)
    assert status == 422 and problem["type"] == PROBLEM + "request_invalid", problem
    assert await tokens_of(shop, subject) == []

    body = {"role": "user", "subject": subject}
    first = await shop.post("/v1/tokens", json=body, headers=idem)
    assert first[0] == 201 and first[1]["token"].startswith("exe_"), first[1]
    again = await shop.post("/v1/tokens", json=body, headers=idem)
    assert_replay(first, again)  # the same secret, to the same caller (docs/idempotency.md)
    assert again[2]["Cache-Control"] == first[2]["Cache-Control"] == "no-store"
    assert [t["id"] for t in await tokens_of(shop, subject)] == [first[1]["id"]]
    status, _, _ = await api.as_token(again[1]["token"]).get("/v1/agents")
    assert status == 200

    status, problem, _ = await shop.post("/v1/tokens", json={**body, "subject": subject + "-b"}, headers=idem)
    assert status == 422 and problem["type"] == PROBLEM + "idempotency_key_reused", problem
    assert await tokens_of(shop, subject + "-b") == []

    # The operator's key of the same name is the operator's own.
    status, theirs, headers = await api.post("/v1/tokens", json=body, headers=idem)
    assert status == 201 and REPLAYED not in headers and theirs["token"] != first[1]["token"], theirs
    assert len(await tokens_of(api, subject)) == 2

    # The stored answer holds the secret: it is never written to the log.
    assert first[1]["token"] not in service.log_path.read_text(errors="replace")


# Attestations.

async def test_attesting_twice_with_a_key_replays_the_first_answer(api: Api) -> None:
    import nacl.signing

    from executor.receipts.jwk import to_jwk

    shop = await api.new_token("service")
    agent_id = await shop.register(["cat"])
    record = await shop.run(agent_id, {"n": 1})
    assert record["status"] == "COMPLETED", record
    path = f"/v1/executions/{record['id']}/receipt/attestations"
    status, bundle, _ = await api.get(f"/v1/executions/{record['id']}/receipt")
    assert status == 200, bundle
    envelope = bundle["envelope"]
    payload, kind = base64.b64decode(envelope["payload"]), envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)

    def attestation(keyid: str, message: bytes = pae) -> dict[str, Any]:
        witness = nacl.signing.SigningKey.generate()
        return {"keyid": keyid, "sig": base64.b64encode(witness.sign(message).signature).decode(),
                "public_key": to_jwk(witness.verify_key)}

    idem = key()
    status, problem, _ = await shop.post(path, json=attestation("shop-1", b"not the receipt"), headers=idem)
    assert status == 422 and problem["type"] == PROBLEM + "attestation_invalid", problem

    mine = attestation("shop-1")
    first = await shop.post(path, json=mine, headers=idem)
    assert first[0] == 201, first[1]
    again = await shop.post(path, json=mine, headers=idem)
    assert_replay(first, again)

    status, problem, _ = await shop.post(path, json=attestation("shop-2"), headers=idem)
    assert status == 422 and problem["type"] == PROBLEM + "idempotency_key_reused", problem

    # The operator's key of the same name is the operator's own.
    status, theirs, headers = await api.post(path, json=attestation("operator-1"), headers=idem)
    assert status == 201 and REPLAYED not in headers, theirs

    status, now, _ = await api.get(f"/v1/executions/{record['id']}/receipt")
    assert [s["keyid"] for s in now["envelope"]["signatures"]][1:] == ["shop-1", "operator-1"]


# Two API processes on one database.

@pytest.fixture(scope="module")
def pair(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, images: dict[str, str]
         ) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two API-only processes (no worker) sharing one database."""
    first = dataclasses.replace(make_service(postgres, redis_server, "replays", redis_db="13"), command="api")
    with with_api_sibling(first, "replays_b") as pair:
        yield pair


@pytest.fixture
async def clients(pair: tuple[ServiceProcess, ServiceProcess]) -> AsyncIterator[tuple[Api, Api]]:
    async with operator_clients(pair) as clients:
        yield clients


async def test_two_processes_issue_one_token_for_one_key(clients: tuple[Api, Api]) -> None:
    one, two = clients
    subject = f"bob-{uuid.uuid4().hex[:8]}"
    body, idem = {"role": "user", "subject": subject}, key()
    answers = await asyncio.gather(*((one if n % 2 else two).post("/v1/tokens", json=body, headers=idem)
                                     for n in range(12)))
    issued = [a for a in answers if a[0] == 201 and REPLAYED not in a[2]]
    assert len(issued) == 1, [a[:2] for a in answers]
    assert {a[0] for a in answers} <= {201, 409}
    assert all(a[1] == issued[0][1] for a in answers if a[0] == 201)
    assert [t["id"] for t in await tokens_of(one, subject)] == [issued[0][1]["id"]]
    # Either process replays it afterwards.
    assert_replay(issued[0], await one.post("/v1/tokens", json=body, headers=idem))
    assert_replay(issued[0], await two.post("/v1/tokens", json=body, headers=idem))
    status, problem, _ = await two.post("/v1/tokens", json={**body, "role": "service"}, headers=idem)
    assert status == 422 and problem["type"] == PROBLEM + "idempotency_key_reused", problem


async def test_a_key_lives_for_the_ttl_and_its_answer_is_then_deleted(postgres: EmbeddedPostgres,
                                                                      redis_server: EmbeddedRedis) -> None:
    import asyncpg

    async with serving(postgres, redis_server, "replay_ttl", redis_db="13", idempotency_ttl_s="1") as (svc, api):
        subject = f"carol-{uuid.uuid4().hex[:8]}"
        body, idem = {"role": "user", "subject": subject}, key()
        first = await api.post("/v1/tokens", json=body, headers=idem)
        assert_replay(first, await api.post("/v1/tokens", json=body, headers=idem))
        conn = await asyncpg.connect(svc.env["EXECUTOR_DATABASE_URL"])
        try:
            assert await conn.fetchval("SELECT count(*) FROM replays") == 1
            for _ in range(50):  # the sweep runs every 0.5 s for a TTL of 1 s
                await asyncio.sleep(0.1)
                if await conn.fetchval("SELECT count(*) FROM replays") == 0:
                    break
            assert await conn.fetchval("SELECT count(*) FROM replays") == 0  # the secret with it
        finally:
            await conn.close()
        status, second, headers = await api.post("/v1/tokens", json=body, headers=idem)
        assert status == 201 and REPLAYED not in headers and second["id"] != first[1]["id"], second
