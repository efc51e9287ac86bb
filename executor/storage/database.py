"""Connecting to PostgreSQL and applying the numbered SQL migrations."""

from __future__ import annotations

import json
import logging
import re
from importlib import resources
from typing import TypeAlias

import asyncpg
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from executor.errors import DependencyUnavailable

log = logging.getLogger(__name__)

# Where a query runs: the pool (each statement on whichever connection is free) or one
# connection (inside a transaction). asyncpg has no type information, so to mypy both are
# Any: every value a query returns is annotated where it is read.
Connection: TypeAlias = asyncpg.Pool | asyncpg.Connection

# One advisory lock key for "migrating", so that several processes starting
# at once apply each migration exactly once.
_MIGRATION_LOCK = 0x6578_6563  # "exec"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_TRANSIENT = (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """A released connection needs no reset query: executor sets no session state (no SET,
    no LISTEN, no cursors; advisory locks are per transaction, or unlocked explicitly).
    asyncpg still rolls back an open transaction first. asyncpg's default reset is four
    statements per release, the largest share of all statements under load."""


def _log_wait(state: RetryCallState) -> None:
    failure = state.outcome.exception() if state.outcome else None
    log.warning("waiting for PostgreSQL (attempt %d): %s", state.attempt_number, failure)


async def create_pool(dsn: str, *, wait_s: float = 30.0, max_size: int = 20) -> asyncpg.Pool:
    """A connection pool, retrying the first connection with bounded backoff."""
    attempts = AsyncRetrying(
        retry=retry_if_exception_type(_TRANSIENT),
        wait=wait_exponential(multiplier=0.1, max=2.0),
        stop=stop_after_delay(wait_s),
        before_sleep=_log_wait,
        reraise=True,
    )
    try:
        async for attempt in attempts:
            with attempt:
                return await asyncpg.create_pool(dsn, min_size=2, max_size=max_size, init=_init_connection,
                                                 reset=_no_session_state)
    except _TRANSIENT as exc:
        raise DependencyUnavailable(f"PostgreSQL did not answer within {wait_s:.0f} s: {exc}") from exc
    raise AssertionError("unreachable")


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("executor.storage").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found)


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction; returns their names."""
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, sql in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
                log.info("applied migration %s", name)
                applied_now.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now
