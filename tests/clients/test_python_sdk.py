"""The Python SDK (clients/python, `executor_client`) against the real service: the marketplace
flow with typed errors, webhook and offline receipt verification; one client from many threads
and event loops; a lost answer retried with its Idempotency-Key; every list iterator past one
page; 429 and Retry-After; and a clean install that pulls in nothing of the server."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from executor.embedded import EmbeddedPostgres, EmbeddedRedis
from executor_client import (
    AsyncExecutor,
    EntitlementUsedUp,
    Executor,
    Forbidden,
    InputInvalid,
    RateLimited,
    RetryPolicy,
    verify_webhook,
)
from executor_client import receipts as offline
from tests.api.conftest import Receiver
from tests.clients.sdk_proxy import AnswerLosingProxy
from tests.conftest import ServiceProcess, serving

REPO = Path(__file__).resolve().parents[2]
ECHO = {"image": "executor/busybox:latest", "command": ["cat"], "output_schema": {"type": "object"}}


def name() -> str:
    return f"sdk-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    await hook.start()
    yield hook
    await hook.stop()


@pytest.fixture
async def operator(market_service: ServiceProcess) -> AsyncIterator[AsyncExecutor]:
    async with AsyncExecutor(market_service.base_url, market_service.operator_token) as api:
        yield api


async def parties(operator: AsyncExecutor) -> tuple[AsyncExecutor, AsyncExecutor, str]:
    """A service and a user of it, each with a token of their own."""
    service = operator.with_token((await operator.create_token("service", name()))["token"])
    subject = name()
    user = operator.with_token((await service.create_token("user", subject))["token"])
    return service, user, subject


async def test_the_marketplace_flow(operator: AsyncExecutor, receiver: Receiver) -> None:
    service, user, alice = await parties(operator)
    agent = await service.register_agent(
        name=name(), input_schema={"type": "object", "required": ["text"]},
        pricing={"currency": "EUR", "decimals": 2, "per_call": 10}, **ECHO)
    endpoint = await service.set_webhook_endpoint(receiver.url)
    grant = await service.grant(alice, agent["id"], uses=2, expires_at=datetime.now(UTC) + timedelta(days=30))
    assert grant["state"] == "live" and grant["uses_remaining"] == 2

    with pytest.raises(InputInvalid) as refused:
        await user.submit(agent["id"], {"no": "text"})
    assert refused.value.status == 422 and refused.value.errors

    record = await user.run(agent["id"], {"text": "hello marketplace"})
    assert record["status"] == "COMPLETED" and record["output"] == {"text": "hello marketplace"}
    assert record["cost"] is not None and record["cost"]["amount"] == 10 and record["service"] is not None

    (received,) = await receiver.wait_for(1)
    payload = verify_webhook(endpoint["secret"], received.headers, received.body)
    assert payload["type"] == "execution.completed" and payload["data"]["execution"]["id"] == record["id"]

    # The receipt, checked with the SDK alone: the keys the service publishes, the head in the bundle,
    # and the exact input and output bytes.
    bundle = await user.receipt(record["id"])
    input_bytes, output_bytes = await user.execution_input(record["id"]), await user.stdout(record["id"])
    report = offline.verify_bundle(bundle, await user.keys(), input_bytes=input_bytes, output_bytes=output_bytes)
    assert report.valid, report.to_dict()
    assert report.statement is not None and report.statement["execution_id"] == record["id"]
    assert report.statement["cost"]["amount"] == 10
    tampered = offline.verify_bundle(bundle, await user.keys(), input_bytes=b'{"text":"something else"}')
    assert [f.reason for f in tampered.failures] == ["input_hash_mismatch"]
    assert (await user.verify_receipt(bundle, input_bytes=input_bytes))["valid"]  # the service agrees
    # An agent without egress: nothing sent, nothing bound; a list offered as evidence is refused.
    assert await user.egress(record["id"]) == {"execution_id": record["id"], "final": True, "data": None,
                                                "digest": None}
    assert not (await user.verify_receipt(bundle, egress=[]))["valid"]

    (version,) = (await service.agent_stats(agent["id"]))["versions"]
    assert version["executions"] == 1 and version["success_rate"] == 1.0
    (entitlement,) = [e async for e in service.entitlements(user=alice, agent_id=agent["id"])]
    assert entitlement["uses_remaining"] == 1
    assert [d["status"] async for d in service.webhook_deliveries(record["id"])] == ["delivered"]

    assert (await user.run(agent["id"], {"text": "again"}))["status"] == "COMPLETED"
    with pytest.raises(EntitlementUsedUp) as used_up:
        await user.run(agent["id"], {"text": "one too many"})
    assert used_up.value.status == 403 and used_up.value.slug == "entitlement_used_up"

    # Priority classes: a service may lower its own; high is an operator's grant.
    low = await service.run(agent["id"], {"text": "later"}, priority="low")
    assert low["status"] == "COMPLETED" and low["priority"] == "low"
    with pytest.raises(Forbidden):
        await service.submit(agent["id"], {"text": "now"}, priority="high")
    granted = await operator.create_token("service", name(), priorities=["normal", "high"])
    assert granted["priorities"] == ["high", "normal"]


def test_one_client_from_threads_and_event_loops(market_service: ServiceProcess) -> None:
    api = Executor(market_service.base_url, market_service.operator_token)
    agent = api.register_agent(name=name(), input_schema=True, **ECHO)
    subject = name()
    api.grant(subject, agent["id"])

    async def inside_a_loop() -> str:
        return api.run(agent["id"], {"loop": 1}, on_behalf_of=subject)["status"]

    assert asyncio.run(inside_a_loop()) == asyncio.run(inside_a_loop()) == "COMPLETED"

    results: list[str] = []
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            assert api.agent(agent["id"])["id"] == agent["id"]
            results.append(api.run(agent["id"], {"thread": n}, on_behalf_of=subject)["status"])
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures and results == ["COMPLETED"] * 8
    api.close()

    shared = AsyncExecutor(market_service.base_url, market_service.operator_token)

    async def in_a_new_loop(n: int) -> str:
        status = (await shared.run(agent["id"], {"async": n}, on_behalf_of=subject))["status"]
        assert (await shared.health())["status"] == "ok"
        return status

    assert asyncio.run(in_a_new_loop(1)) == "COMPLETED"  # its loop is closed after this line
    assert asyncio.run(in_a_new_loop(2)) == "COMPLETED"  # a new loop: a new connection pool, the same client
    asyncio.run(shared.aclose())


async def test_a_lost_answer_is_retried_with_the_same_key_and_charged_once(
        operator: AsyncExecutor, market_service: ServiceProcess) -> None:
    service, user, subject = await parties(operator)
    agent = await service.register_agent(name=name(), input_schema=True, **ECHO)
    grant = await service.grant(subject, agent["id"], uses=5)
    target = urlsplit(market_service.base_url)
    assert target.hostname and target.port
    proxy = AnswerLosingProxy(target.hostname, target.port, lambda head: head.startswith(b"POST /v1/executions?"))
    await proxy.start()
    try:
        assert user.token is not None
        async with AsyncExecutor(proxy.url, user.token, retry=RetryPolicy(backoff_base_s=0.05)) as through_proxy:
            record = await through_proxy.submit(agent["id"], {"lost": "answer"}, wait=10)
    finally:
        await proxy.stop()

    posts = [e for e in proxy.exchanges if e.request_head.startswith(b"POST")]
    assert [e.killed for e in posts] == [True, False]
    keys = {line for e in posts for line in e.request_head.split(b"\r\n") if line.lower().startswith(b"idempotency")}
    assert len(keys) == 1  # the retry sent the same Idempotency-Key
    assert posts[0].response_head.split(b" ")[1] in (b"201", b"202")  # the first one was accepted...
    assert b"idempotent-replayed: true" in posts[1].response_head.lower()  # ...the second answer replays it

    executions = [e async for e in user.executions()]
    assert [e["id"] for e in executions] == [record["id"]]  # one execution
    (entitlement,) = [e async for e in service.entitlements(user=subject, agent_id=agent["id"])]
    assert grant["uses_remaining"] == 5 and entitlement["uses_remaining"] == 4  # one use taken


async def test_every_list_iterator_walks_past_one_page(operator: AsyncExecutor, receiver: Receiver) -> None:
    service, user, subject = await parties(operator)
    await service.set_webhook_endpoint(receiver.url)
    agents = [await service.register_agent(name=name(), input_schema=True, **ECHO)
              for _ in range(3)]
    for agent in agents:
        await service.grant(subject, agent["id"])
    first = agents[0]["id"]
    for _ in range(2):
        await service.publish_version(first, input_schema=True, **ECHO)
    records = [await user.run(first, {"n": n}) for n in range(3)]
    for _ in range(2):
        await service.create_token("user", subject)

    async def walk(items: AsyncIterator[dict[str, Any]]) -> list[str]:
        return [str(item["id"]) async for item in items]

    mine = {a["id"] for a in agents}
    assert mine <= set(await walk(service.agents(page_size=2)))
    assert sorted([v["version"] async for v in service.versions(first, page_size=2)]) == [1, 2, 3]
    assert len(set(await walk(service.entitlements(user=subject, page_size=2)))) == 3
    assert sorted(await walk(user.executions(page_size=2))) == sorted(r["id"] for r in records)
    # A window of creation time, as an aware datetime in any zone: [since, before).
    since = datetime.fromisoformat(records[1]["created_at"]).astimezone(timezone(timedelta(hours=-3)))
    assert await walk(user.executions(created_since=since, page_size=1)) == [records[2]["id"], records[1]["id"]]
    page = await user.list_executions(created_before=since)
    assert [e["id"] for e in page["items"]] == [records[0]["id"]]
    tokens = await walk(service.tokens(subject=subject, page_size=2))
    assert len(tokens) == 3 and len(set(tokens)) == 3
    images = await walk(operator.images(page_size=1))
    assert len(images) >= 2 and len(set(images)) == len(images)
    # An execution has one delivery (the event it ends with): the iterator stops after that one page.
    await receiver.wait_for(3)
    assert len(await walk(service.webhook_deliveries(records[0]["id"], page_size=1))) == 1


async def test_429_waits_for_retry_after(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis,
                                         images: dict[str, str]) -> None:
    async with serving(postgres, redis_server, "sdk_limits", redis_db="4", user_burst="1",
                       user_rate_per_s="1") as (svc, _), \
            AsyncExecutor(svc.base_url, svc.operator_token) as operator:
        service, user, subject = await parties(operator)
        agent = await service.register_agent(name=name(), input_schema=True, **ECHO)
        await service.grant(subject, agent["id"])
        assert (await user.submit(agent["id"], {"n": 1}))["status"] in ("PENDING", "RUNNING", "COMPLETED")

        impatient = AsyncExecutor(svc.base_url, user.token, max_retries=0)
        with pytest.raises(RateLimited) as limited:
            await impatient.submit(agent["id"], {"n": 2})
        assert limited.value.status == 429 and limited.value.retry_after is not None
        assert 0 < limited.value.retry_after <= 1
        await impatient.aclose()

        started = time.monotonic()
        record = await user.submit(agent["id"], {"n": 3})  # waits Retry-After, then goes through
        assert record["status"] in ("PENDING", "RUNNING", "COMPLETED")
        assert time.monotonic() - started >= 0.5
        assert len([e async for e in user.executions()]) == 2  # the refused one made nothing


def test_a_clean_install_pulls_in_nothing_of_the_server(tmp_path: Path) -> None:
    source = tmp_path / "executor-client"  # a copy: building in place would leave build/ in the checkout
    shutil.copytree(REPO / "clients" / "python", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    subprocess.run([*pip, "install", "-q", str(source)], check=True, timeout=300)
    listed = subprocess.run([*pip, "list", "--format=freeze"], check=True, capture_output=True, text=True).stdout
    installed = {line.split("==")[0].lower() for line in listed.split()}
    assert "executor-client" in installed and "httpx" in installed
    assert not installed & {"docker", "asyncpg", "redis", "wasmtime", "aiohttp", "executor", "pynacl"}, installed
    code = "import executor_client, sys; assert 'executor' not in sys.modules; print(executor_client.__version__)"
    shown = subprocess.run([str(venv / "bin" / "python"), "-c", code], check=True, capture_output=True, text=True,
                           cwd=tmp_path)
    assert shown.stdout.strip() == "0.1.0"
