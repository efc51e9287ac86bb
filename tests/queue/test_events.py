"""Events against a real Redis: a broken subscription is noticed, and its waiters re-read."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as redis

from executor.queue.events import Events

NAME = "events-subscription-test"


async def _kill_our_subscription(admin: redis.Redis) -> None:
    clients = await admin.client_list(_type="pubsub")
    ours = [c["id"] for c in clients if c.get("name") == NAME]
    assert ours, clients
    for client_id in ours:
        await admin.client_kill_filter(_id=client_id)


async def test_a_broken_subscription_wakes_every_waiter_and_counts_as_a_break(redis_server) -> None:
    base = redis_server.url.rsplit("/", 1)[0]
    client = redis.Redis.from_url(base + "/15", client_name=NAME)
    admin = redis.Redis.from_url(base + "/15")
    events = Events(client)
    await events.start()
    try:
        first = events.generation
        assert events.unbroken_since(first)
        execution_id = uuid.uuid4()
        final, change = events.waiter(execution_id), events.change_waiter(execution_id)

        await _kill_our_subscription(admin)
        # Nothing was published: they wake because a message may have been lost meanwhile.
        await asyncio.wait_for(asyncio.gather(asyncio.shield(final), asyncio.shield(change)), 10)
        assert not events.unbroken_since(first)
        for _ in range(100):  # then it subscribes again, as a new generation
            if events.generation > first and events.unbroken_since(events.generation):
                break
            await asyncio.sleep(0.1)
        assert events.generation > first and events.unbroken_since(events.generation)

        events.discard(execution_id, final)
        events.discard(execution_id, change)
        again = events.waiter(execution_id)
        await events.publish_finished(execution_id)  # delivered on the new subscription
        await asyncio.wait_for(asyncio.shield(again), 5)
        events.discard(execution_id, again)
    finally:
        await events.stop()
        await client.aclose()
        await admin.aclose()
