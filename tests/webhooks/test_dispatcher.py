"""The webhook outbox against a real PostgreSQL and a real HTTP receiver: deliveries arrive
signed, failures are retried and recorded, nothing is lost across a restart or a crash, two
dispatchers never send one delivery twice, and private targets stay unreachable."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import standardwebhooks
from aiohttp import web

from executor.embedded import EmbeddedPostgres, free_port
from executor.records.webhooks import Delivery
from executor.settings import Settings
from executor.storage import webhooks as webhook_sql
from executor.storage.database import create_pool, migrate
from executor.webhooks import signing
from executor.webhooks.dispatcher import WebhookDispatcher

FAST = Settings(webhook_allow_private=True, webhook_retry_base_s=0.05, webhook_retry_max_s=0.2,
                webhook_poll_s=0.05, webhook_timeout_s=5.0)
OWNER = "service:market"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class Receiver:
    """A real aiohttp server on 127.0.0.1 answering each request with the next of `answers`
    (then 200), remembering every request."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.port = free_port()
        self.answers = list(answers or [])
        self.requests: list[Received] = []
        self.delay_s = 0.0
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = self.answers.pop(0) if self.answers else 200
        self.requests.append(Received(request.path, {k.lower(): v for k, v in request.headers.items()}, body, status))
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": self.url("/elsewhere")})
        return web.Response(status=status, text="x" * 100_000)  # more than the dispatcher reads

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def delivered_ids(self) -> Counter[str]:
        return Counter(r.headers["webhook-id"] for r in self.requests if 200 <= r.status < 300)


@pytest.fixture(scope="module")
def database_url(postgres: EmbeddedPostgres) -> str:
    return postgres.create_database(f"webhooks_{secrets.token_hex(4)}")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url)
    await migrate(pool)
    # Dispatchers take whatever is due in the database: start each test with an empty outbox.
    await pool.execute("DELETE FROM webhook_attempts; DELETE FROM webhook_deliveries")
    yield pool
    await pool.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    yield server
    await server.stop()


@pytest.fixture
async def dispatchers(db: asyncpg.Pool) -> AsyncIterator[Callable[..., WebhookDispatcher]]:
    """Makes dispatchers on the test database; every one made is stopped after the test."""
    made: list[WebhookDispatcher] = []

    def make(settings: Settings = FAST, **kwargs: Any) -> WebhookDispatcher:
        made.append(WebhookDispatcher(db, settings, **kwargs))
        return made[-1]

    yield make
    for dispatcher in made:
        await dispatcher.stop()


async def new_execution(db: asyncpg.Pool) -> uuid.UUID:
    """A final execution row with the fewest columns 0001_initial.sql requires."""
    agent_id, execution_id = uuid.uuid4(), uuid.uuid4()
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO agents (id, name, kind, owner) VALUES ($1, $2, 'container', $3)",
                           agent_id, f"agent-{agent_id.hex[:12]}", OWNER)
        await conn.execute(
            "INSERT INTO agent_versions (agent_id, version, image, image_digest, input_schema, output_schema, limits)"
            " VALUES ($1, 1, 'executor/busybox:latest', 'sha256:00', '{}', 'true', '{}')", agent_id)
        await conn.execute(
            "INSERT INTO executions (id, agent_id, agent_version, owner, status, input, limits)"
            " VALUES ($1, $2, 1, $3, 'COMPLETED', '{}', '{}')", execution_id, agent_id, OWNER)
    return execution_id


async def enqueue(db: asyncpg.Pool, url: str) -> tuple[uuid.UUID, uuid.UUID, bytes]:
    """(execution id, delivery id, payload) of a new final execution with one delivery to `url`."""
    execution_id = await new_execution(db)
    payload = signing.message("execution.completed", {"id": str(execution_id), "status": "COMPLETED"},
                              datetime.now(UTC))
    delivery_id = await webhook_sql.enqueue(db, execution_id=execution_id, event_type="execution.completed",
                                            url=url, endpoint_owner=OWNER, payload=payload,
                                            new_secret=signing.new_secret())
    assert delivery_id is not None
    return execution_id, delivery_id, payload


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def delivery_of(db: asyncpg.Pool, execution_id: uuid.UUID) -> Delivery:
    [delivery] = await webhook_sql.deliveries_of(db, execution_id)
    return delivery


def status_is(db: asyncpg.Pool, execution_id: uuid.UUID, status: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await delivery_of(db, execution_id)).status == status
    return check


async def test_a_delivery_arrives_signed_and_is_recorded(db: asyncpg.Pool, receiver: Receiver,
                                                         dispatchers: Callable[..., WebhookDispatcher]) -> None:
    await receiver.start()
    execution_id, delivery_id, payload = await enqueue(db, receiver.url())
    assert await dispatchers().run_once() == 1

    [got] = receiver.requests
    secret = (await webhook_sql.get_endpoint(db, OWNER)).secret  # type: ignore[union-attr]
    assert standardwebhooks.Webhook(secret).verify(got.body, got.headers) == json.loads(payload)
    signing.verify(secret, got.headers, got.body)
    assert got.body == payload and got.headers["webhook-id"] == str(delivery_id)
    assert got.headers["content-type"] == "application/json"

    delivery = await delivery_of(db, execution_id)
    assert (delivery.status, delivery.attempt_count, delivery.last_error) == ("delivered", 1, None)
    [attempt] = delivery.attempts
    assert (attempt.attempt, attempt.status_code, attempt.error) == (1, 200, None)
    shown = delivery.to_dict()
    assert shown["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert shown["delivered_at"].endswith("Z") and shown["attempts"][0]["started_at"].endswith("Z")
    assert secret not in json.dumps(shown) and "payload" not in shown


async def test_a_final_state_enqueues_once(db: asyncpg.Pool, receiver: Receiver) -> None:
    execution_id, _, payload = await enqueue(db, receiver.url())
    again = await webhook_sql.enqueue(db, execution_id=execution_id, event_type="execution.completed",
                                      url=receiver.url(), endpoint_owner=OWNER, payload=payload,
                                      new_secret=signing.new_secret())
    assert again is None
    assert len(await webhook_sql.deliveries_of(db, execution_id)) == 1


async def test_endpoints_keep_a_url_and_a_rotating_secret(db: asyncpg.Pool) -> None:
    owner = f"service:{uuid.uuid4().hex[:8]}"
    assert await webhook_sql.get_endpoint(db, owner) is None
    first = await webhook_sql.ensure_endpoint(db, owner, signing.new_secret())
    assert first.url is None and first.secret.startswith("whsec_") and first.secret not in repr(first)
    assert await webhook_sql.ensure_endpoint(db, owner, signing.new_secret()) == first
    with_url = await webhook_sql.set_endpoint_url(db, owner, "https://hooks.example.com/", signing.new_secret())
    assert (with_url.url, with_url.secret) == ("https://hooks.example.com/", first.secret)
    rotated = await webhook_sql.rotate_secret(db, owner, signing.new_secret())
    assert rotated.secret != first.secret and rotated.url == with_url.url
    assert (await webhook_sql.set_endpoint_url(db, owner, None, signing.new_secret())).url is None


async def test_server_errors_are_retried_until_one_succeeds(db: asyncpg.Pool, receiver: Receiver,
                                                            dispatchers: Callable[..., WebhookDispatcher]) -> None:
    receiver.answers = [500, 500]
    await receiver.start()
    execution_id, delivery_id, _ = await enqueue(db, receiver.url())
    await dispatchers().start()
    await eventually(status_is(db, execution_id, "delivered"))

    delivery = await delivery_of(db, execution_id)
    assert [a.status_code for a in delivery.attempts] == [500, 500, 200]
    assert [a.error for a in delivery.attempts] == ["HTTP 500", "HTTP 500", None]
    assert [r.status for r in receiver.requests] == [500, 500, 200]
    assert receiver.delivered_ids() == {str(delivery_id): 1}
    secret = (await webhook_sql.get_endpoint(db, OWNER)).secret  # type: ignore[union-attr]
    for request in receiver.requests:  # each attempt signed anew, with the same webhook-id
        standardwebhooks.Webhook(secret).verify(request.body, request.headers)


async def test_a_receiver_down_then_up_gets_it_once(db: asyncpg.Pool, receiver: Receiver,
                                                    dispatchers: Callable[..., WebhookDispatcher]) -> None:
    execution_id, delivery_id, _ = await enqueue(db, receiver.url())  # nothing listens yet
    await dispatchers().start()
    await eventually(lambda: attempts_at_least(db, execution_id, 2))
    await receiver.start()
    await eventually(status_is(db, execution_id, "delivered"))

    *failed, last = (await delivery_of(db, execution_id)).attempts
    assert all(a.status_code is None and "Connect" in (a.error or "") for a in failed)
    assert (last.status_code, last.error) == (200, None)
    assert receiver.delivered_ids() == {str(delivery_id): 1} and len(receiver.requests) == 1


async def attempts_at_least(db: asyncpg.Pool, execution_id: uuid.UUID, n: int) -> bool:
    return (await delivery_of(db, execution_id)).attempt_count >= n


async def test_a_new_dispatcher_delivers_what_a_stopped_one_left(db: asyncpg.Pool, receiver: Receiver,
                                                                 dispatchers: Callable[..., WebhookDispatcher]) -> None:
    execution_id, delivery_id, _ = await enqueue(db, receiver.url())
    first = dispatchers()
    await first.start()
    await eventually(lambda: attempts_at_least(db, execution_id, 1))
    await first.stop()
    assert (await delivery_of(db, execution_id)).status == "pending"
    assert await db.fetchval("SELECT locked_by FROM webhook_deliveries WHERE id = $1", delivery_id) is None

    await receiver.start()
    await dispatchers().start()
    await eventually(status_is(db, execution_id, "delivered"))
    assert receiver.delivered_ids() == {str(delivery_id): 1}


async def test_a_crash_mid_attempt_loses_nothing(db: asyncpg.Pool, receiver: Receiver,
                                                 dispatchers: Callable[..., WebhookDispatcher]) -> None:
    await receiver.start()
    execution_id, delivery_id, _ = await enqueue(db, receiver.url())
    # A dispatcher claims the delivery and dies before recording anything: its lease stays.
    [claimed] = await webhook_sql.claim_due(db, limit=10, lease_s=1.0, locked_by="crashed")
    assert claimed.id == delivery_id
    survivor = dispatchers()
    assert await survivor.run_once() == 0  # leased: not due for anyone else yet
    await survivor.start()
    await eventually(status_is(db, execution_id, "delivered"))
    assert receiver.delivered_ids() == {str(delivery_id): 1}


async def test_two_dispatchers_send_each_delivery_once(db: asyncpg.Pool, receiver: Receiver,
                                                       dispatchers: Callable[..., WebhookDispatcher]) -> None:
    receiver.delay_s = 0.01
    await receiver.start()
    executions = [(await enqueue(db, receiver.url()))[0] for _ in range(40)]
    one, two = dispatchers(batch_size=3), dispatchers(batch_size=3)
    # Both claim at the same moment first, then keep going side by side.
    made = await asyncio.gather(one.run_once(), two.run_once())
    assert made == [3, 3]
    await asyncio.gather(one.start(), two.start())

    async def all_delivered() -> bool:
        return await db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'") == 40
    await eventually(all_delivered)
    assert len(receiver.requests) == 40
    assert set(receiver.delivered_ids().values()) == {1} and len(receiver.delivered_ids()) == 40
    assert await db.fetchval("SELECT count(*) FROM webhook_attempts") == 40
    for execution_id in executions[:3]:
        assert (await delivery_of(db, execution_id)).attempt_count == 1


async def test_max_attempts_then_failed(db: asyncpg.Pool, receiver: Receiver,
                                        dispatchers: Callable[..., WebhookDispatcher]) -> None:
    receiver.answers = [503] * 10
    await receiver.start()
    execution_id, _, _ = await enqueue(db, receiver.url())
    dispatcher = dispatchers(replace(FAST, webhook_max_attempts=3))
    await dispatcher.start()
    await eventually(status_is(db, execution_id, "failed"))
    await dispatcher.stop()

    delivery = await delivery_of(db, execution_id)
    assert [(a.attempt, a.status_code) for a in delivery.attempts] == [(1, 503), (2, 503), (3, 503)]
    assert delivery.last_error == "HTTP 503" and delivery.to_dict()["next_attempt_at"] is None
    assert len(receiver.requests) == 3
    assert await dispatcher.run_once() == 0  # given up: never sent again


async def test_a_redirect_is_a_failure_and_not_followed(db: asyncpg.Pool, receiver: Receiver,
                                                        dispatchers: Callable[..., WebhookDispatcher]) -> None:
    receiver.answers = [302]
    await receiver.start()
    execution_id, _, _ = await enqueue(db, receiver.url())
    assert await dispatchers(replace(FAST, webhook_max_attempts=1)).run_once() == 1

    delivery = await delivery_of(db, execution_id)
    [attempt] = delivery.attempts
    assert delivery.status == "failed" and attempt.status_code == 302 and "redirect" in (attempt.error or "")
    assert [r.path for r in receiver.requests] == ["/hook"]  # /elsewhere never asked


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_private_targets_are_refused_at_delivery(db: asyncpg.Pool, receiver: Receiver, host: str,
                                                       dispatchers: Callable[..., WebhookDispatcher]) -> None:
    # "localhost" is a name (refused by the resolver: it resolves to 127.0.0.1); "127.0.0.1" a
    # literal, which no resolver sees (refused by the check at delivery).
    await receiver.start()
    execution_id, _, _ = await enqueue(db, receiver.url(host=host))
    assert await dispatchers(replace(FAST, webhook_allow_private=False)).run_once() == 1

    delivery = await delivery_of(db, execution_id)
    [attempt] = delivery.attempts
    assert delivery.status == "pending" and attempt.status_code is None
    assert "private" in (attempt.error or ""), attempt.error
    assert receiver.requests == []
