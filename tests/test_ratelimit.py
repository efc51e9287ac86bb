"""The GCRA limiter against the session's real Redis (db 6, a fresh prefix per test),
and its header fields as pure functions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from executor.embedded import EmbeddedRedis, free_port
from executor.ratelimit import Bucket, Decision, LimitState, Rate, RateLimiter, headers

SLOW = 0.001  # one request per 1000 s: nothing refills while a test runs


@pytest.fixture
async def client(redis_server: EmbeddedRedis) -> AsyncIterator[redis.Redis]:
    url = redis_server.url.rsplit("/", 1)[0] + "/6"
    connection = redis.Redis.from_url(url)
    yield connection
    await connection.aclose()


@pytest.fixture
def prefix() -> str:
    return f"test:rl:{uuid.uuid4().hex}:"


@pytest.fixture
def limiter(client: redis.Redis, prefix: str) -> RateLimiter:
    return RateLimiter(client, prefix=prefix)


async def test_fresh_bucket_allows_burst_then_one_per_interval(limiter: RateLimiter) -> None:
    bucket = Bucket("user:alice", Rate("user", per_second=5, burst=3))
    decisions = [await limiter.acquire([bucket]) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.states[0].remaining for d in decisions] == [2, 1, 0]
    assert all(d.retry_after_s == 0 for d in decisions)

    refused = await limiter.acquire([bucket])
    assert not refused.allowed
    assert 0 < refused.retry_after_s <= 0.2  # T = 0.2 s, less what has elapsed since the first
    assert refused.states[0].remaining == 0
    assert refused.retry_after_s < refused.states[0].reset_s <= 0.6  # three intervals to refill

    await asyncio.sleep(refused.retry_after_s + 0.01)
    assert (await limiter.acquire([bucket])).allowed


async def test_concurrent_acquires_allow_exactly_the_burst(limiter: RateLimiter) -> None:
    bucket = Bucket("user:bob", Rate("user", per_second=SLOW, burst=10))
    decisions = await asyncio.gather(*(limiter.acquire([bucket]) for _ in range(100)))
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.states[0].remaining for d in decisions if d.allowed) == list(range(10))


async def test_refusal_charges_no_bucket(limiter: RateLimiter) -> None:
    user = Bucket("user:carol", Rate("user", per_second=SLOW, burst=2))
    service = Bucket("service:svc", Rate("service", per_second=SLOW, burst=10))
    assert (await limiter.acquire([user, service])).allowed
    assert (await limiter.acquire([user, service])).allowed

    refused = await limiter.acquire([user, service])
    assert not refused.allowed
    assert [s.remaining for s in refused.states] == [0, 8]
    assert refused.retry_after_s > 900  # the user bucket blocks: T = 1000 s

    # The service bucket alone still has its 8, proving the refusal did not charge it.
    alone = await limiter.acquire([service])
    assert alone.allowed and alone.states[0].remaining == 7


async def test_cost_counts_several_requests(limiter: RateLimiter) -> None:
    bucket = Bucket("user:dave", Rate("user", per_second=SLOW, burst=5))
    first = await limiter.acquire([bucket], cost=3)
    assert first.allowed and first.states[0].remaining == 2
    too_much = await limiter.acquire([bucket], cost=3)
    assert not too_much.allowed and too_much.states[0].remaining == 2
    assert 900 < too_much.retry_after_s <= 1000  # one interval short
    rest = await limiter.acquire([bucket], cost=2)
    assert rest.allowed and rest.states[0].remaining == 0
    with pytest.raises(ValueError):
        await limiter.acquire([bucket], cost=6)
    with pytest.raises(ValueError):
        await limiter.acquire([bucket], cost=0)


async def test_keys_expire_once_the_bucket_is_full(limiter: RateLimiter, client: redis.Redis, prefix: str) -> None:
    bucket = Bucket("user:erin", Rate("user", per_second=20, burst=2))
    assert (await limiter.acquire([bucket])).allowed
    ttl = await client.pttl(prefix + "user:erin")
    assert 0 < ttl <= 50
    for _ in range(100):  # 50 ms to vanish; give it up to 5 s
        if not await client.exists(prefix + "user:erin"):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the key never expired")
    fresh = await limiter.acquire([bucket])
    assert fresh.allowed and fresh.states[0].remaining == 1


async def test_empty_and_invalid_calls(limiter: RateLimiter) -> None:
    assert await limiter.acquire([]) == Decision(True, 0.0, [])
    rate = Rate("user", per_second=1, burst=1)
    with pytest.raises(ValueError):
        await limiter.acquire([Bucket("user:x", rate), Bucket("user:x", rate)])
    for per_second, burst in [(0.0, 1), (1.0, 0), (float("nan"), 1), (1e-9, 1)]:
        with pytest.raises(ValueError):
            Rate("user", per_second=per_second, burst=burst)


async def test_redis_errors_propagate(limiter: RateLimiter, client: redis.Redis, prefix: str) -> None:
    bucket = Bucket("user:x", Rate("user", per_second=1, burst=1))
    await client.hset(prefix + "user:x", "not", "a tat")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await limiter.acquire([bucket])
    dead = redis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):
        await RateLimiter(dead).acquire([bucket])
    await dead.aclose()


USER = Rate("user", per_second=5, burst=20)
SERVICE = Rate("service", per_second=0.3, burst=3)


def test_headers_when_allowed() -> None:
    decision = Decision(True, 0.0, [LimitState(USER, 3, 1.2), LimitState(SERVICE, 3, 0.0)])
    assert headers(decision) == {
        "RateLimit-Policy": '"user";q=20;w=4, "service";q=3;w=10',
        "RateLimit": '"user";r=3;t=2, "service";r=3;t=0',
    }


def test_headers_when_refused() -> None:
    decision = Decision(False, 2.01, [LimitState(USER, 0, 4.0)])
    assert headers(decision) == {
        "RateLimit-Policy": '"user";q=20;w=4',
        "RateLimit": '"user";r=0;t=4',
        "Retry-After": "3",
    }
    assert headers(Decision(False, 0.0004, [LimitState(USER, 0, 0.2)]))["Retry-After"] == "1"


def test_headers_quote_policy_names() -> None:
    rate = Rate('a"b\\c', per_second=1, burst=1)
    assert headers(Decision(True, 0.0, [LimitState(rate, 1, 0.0)]))["RateLimit"] == '"a\\"b\\\\c";r=1;t=0'
    with pytest.raises(ValueError):
        Rate("caf\u00e9", per_second=1, burst=1)
    assert headers(Decision(True, 0.0, [])) == {}
