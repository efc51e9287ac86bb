"""The private PostgreSQL and Redis servers (real servers, nothing mocked)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from executor import embedded
from executor.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedRedis, free_port


@pytest.fixture
def base() -> Iterator[Path]:
    """A temp dir the unprivileged PostgreSQL user can traverse (pytest's own tmp_path is 0700 root's)."""
    path = Path(tempfile.mkdtemp(prefix="executor-test-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def alive(pid: int) -> bool:
    """Running (a zombie that only waits to be reaped does not count)."""
    return bool(embedded._process_args(pid))


def postgres_pids(server: EmbeddedPostgres) -> list[int]:
    """The postmaster and its children."""
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    children = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()
                and _parent(int(entry.name)) == postmaster]
    return [postmaster, *children]


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


async def redis_pid(url: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        return int((await client.info("server"))["process_id"])
    finally:
        await client.aclose()


@pytest.mark.e2e  # starts its own PostgreSQL and Redis
async def test_loopback_servers_serve_and_stop_cleanly(base: Path) -> None:
    postgres = EmbeddedPostgres(base / "postgres", port=free_port(), durable=False)
    redis_server = EmbeddedRedis(base / "redis", port=free_port(), durable=False)
    try:
        dsn, url = postgres.start(), redis_server.start()
        assert dsn == postgres.dsn == f"postgresql://executor@127.0.0.1:{postgres.port}/executor"
        assert url == redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
        connection = await asyncpg.connect(dsn)
        assert await connection.fetchval("SELECT 1") == 1
        assert await connection.fetchval("SHOW fsync") == "off"
        await connection.close()

        # Databases made by create_database are separate from each other.
        first, second = postgres.create_database("iso_a"), postgres.create_database("iso_b")
        assert first.endswith("/iso_a")
        connection = await asyncpg.connect(first)
        await connection.execute("CREATE TABLE only_here (x int)")
        await connection.close()
        connection = await asyncpg.connect(second)
        assert await connection.fetchval("SELECT to_regclass('only_here')") is None
        await connection.close()
        with pytest.raises(EmbeddedError, match="already exists"):
            postgres.create_database("iso_a")
        with pytest.raises(EmbeddedError, match="unsupported database name"):
            postgres.create_database('x"; DROP DATABASE executor; --')

        client = aioredis.Redis.from_url(url)
        assert await client.ping()
        await client.aclose()
        pids = [*postgres_pids(postgres), await redis_pid(url)]
        assert len(pids) > 3 and all(alive(pid) for pid in pids)
    finally:
        redis_server.stop()
        postgres.stop()
    assert not [pid for pid in pids if alive(pid)]
    redis_server.stop()  # twice is harmless
    postgres.stop()


@pytest.mark.e2e  # starts its own PostgreSQL and Redis
async def test_unix_socket_servers_keep_data_across_restarts(base: Path) -> None:
    postgres, redis_server = EmbeddedPostgres(base / "postgres"), EmbeddedRedis(base / "redis")
    try:
        dsn, url = postgres.start(), redis_server.start()
        assert dsn == f"postgresql://executor@/executor?host={base}/postgres/run"
        assert url == f"unix://{base}/redis/redis.sock?db=0"
        connection = await asyncpg.connect(dsn)
        assert await connection.fetchval("SHOW listen_addresses") == ""  # no TCP at all
        await connection.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
        await connection.close()
        client = aioredis.Redis.from_url(url)
        assert await client.config_get("port") == {"port": "0"}
        await client.set("kept", "yes")
        await client.aclose()
        pids = [*postgres_pids(postgres), await redis_pid(url)]
        assert (base / "redis" / "redis.sock").stat().st_mode & 0o077 == 0

        postgres.stop()
        redis_server.stop()
        assert not [pid for pid in pids if alive(pid)]

        # Durable by default: the table, and the key through Redis's append-only file, survive a restart.
        postgres.start(), redis_server.start()
        connection = await asyncpg.connect(postgres.dsn)
        assert await connection.fetchval("SELECT x FROM kept") == 7
        await connection.close()
        client = aioredis.Redis.from_url(redis_server.url)
        assert await client.get("kept") == b"yes"
        await client.aclose()
    finally:
        redis_server.stop()
        postgres.stop()


@pytest.mark.e2e  # starts its own PostgreSQL and Redis
async def test_start_after_the_previous_owner_was_killed(base: Path) -> None:
    # PostgreSQL killed outright: its postmaster.pid is stale and here names a live process that is not postgres.
    crashed = EmbeddedPostgres(base / "postgres", port=free_port(), durable=False)
    crashed.start()
    for pid in postgres_pids(crashed):
        # A backend may already be gone: the postmaster's death ends its children.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pid_file = crashed.data_dir / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n" + pid_file.read_text().split("\n", 1)[1])
    postgres = EmbeddedPostgres(base / "postgres", port=crashed.port, durable=False)
    # Redis whose owner died: the server lives on, and a new owner must not run a second one beside it.
    orphaned = EmbeddedRedis(base / "redis", port=free_port(), durable=False)
    orphaned.start()
    orphan_pid = await redis_pid(orphaned.url)
    redis_server = EmbeddedRedis(base / "redis", port=orphaned.port, durable=False)
    try:
        connection = await asyncpg.connect(postgres.start())
        assert await connection.fetchval("SELECT 1") == 1
        await connection.close()
        assert await redis_pid(redis_server.start()) != orphan_pid
        assert not alive(orphan_pid)
    finally:
        redis_server.stop()
        postgres.stop()
        orphaned.stop()  # reaps it


def test_missing_binaries_name_the_debian_package(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "POSTGRES_ROOT", base / "nothing")
    monkeypatch.setenv("PATH", str(base))
    with pytest.raises(EmbeddedError, match="install Debian's `postgresql` package"):
        EmbeddedPostgres(base / "postgres").start()
    with pytest.raises(EmbeddedError, match="install Debian's `redis-server` package"):
        EmbeddedRedis(base / "redis").start()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another user")
def test_a_directory_the_postgres_user_cannot_reach_is_refused_clearly(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    with pytest.raises(EmbeddedError, match="not traversable by user"):
        EmbeddedPostgres(tmp_path / "postgres").start()
