"""The private PostgreSQL and Redis servers of `executor up` (real servers)."""

from __future__ import annotations

import shutil
import subprocess

import asyncpg
import redis.asyncio as redis

from executor.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.conftest import private_tmpdir


def running(pattern: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()


async def test_unix_socket_servers_start_stop_and_restart() -> None:
    base = private_tmpdir("executor-test-embedded-")
    postgres, redis_server = EmbeddedPostgres(base / "postgres"), EmbeddedRedis(base / "redis")
    try:
        dsn, url = postgres.start(), redis_server.start()
        assert "host=" in dsn and url.startswith("unix://")
        connection = await asyncpg.connect(dsn)
        await connection.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
        await connection.close()
        client = redis.Redis.from_url(url)
        assert await client.ping()
        await client.set("kept", "yes")
        await client.aclose()

        postgres.stop()
        redis_server.stop()
        assert running(str(base)) == []

        # Data survives a restart (durable by default: Redis keeps an append-only file).
        postgres.start(), redis_server.start()
        connection = await asyncpg.connect(postgres.dsn)
        assert await connection.fetchval("SELECT x FROM kept") == 7
        await connection.close()
        client = redis.Redis.from_url(redis_server.url)
        assert await client.get("kept") == b"yes"
        await client.aclose()
    finally:
        redis_server.stop()
        postgres.stop()
    assert running(str(base)) == []
    shutil.rmtree(base, ignore_errors=True)


async def test_create_database_is_isolated(postgres) -> None:
    first, second = postgres.create_database("iso_a"), postgres.create_database("iso_b")
    a = await asyncpg.connect(first)
    await a.execute("CREATE TABLE only_here (x int)")
    await a.close()
    b = await asyncpg.connect(second)
    assert await b.fetchval("SELECT to_regclass('only_here')") is None
    await b.close()
