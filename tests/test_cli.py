"""The executor command line against real servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def executor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_")}
    return subprocess.run([sys.executable, "-m", "executor", *args], env={**base, **env}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


async def test_migrate_then_tokens_create_gives_a_working_token(postgres, service, api) -> None:
    database_url = postgres.create_database("cli_db")
    first = executor("migrate", EXECUTOR_DATABASE_URL=database_url)
    assert first.returncode == 0 and "0001_initial.sql" in first.stdout, first.stderr
    again = executor("migrate", EXECUTOR_DATABASE_URL=database_url)
    assert again.returncode == 0 and "up to date" in again.stdout

    created = executor("tokens", "create", "--role", "user", "--subject", "cli-user",
                       EXECUTOR_DATABASE_URL=service.env["EXECUTOR_DATABASE_URL"])
    assert created.returncode == 0, created.stderr
    issued = json.loads(created.stdout)
    assert issued["role"] == "user" and issued["token"].startswith("exe_")
    assert issued["token"] not in created.stderr  # printed once, on stdout only
    status, page, _ = await api.as_token(issued["token"]).get("/v1/executions")
    assert status == 200 and page["items"] == []


def test_bad_settings_are_refused_clearly() -> None:
    done = executor("migrate", EXECUTOR_PORT="eighty")
    assert done.returncode == 2 and "EXECUTOR_PORT" in done.stderr
    done = executor("serve", EXECUTOR_DATABASE_URL="postgresql://x@127.0.0.1:1/x")
    assert done.returncode == 2 and "EXECUTOR_REDIS_URL" in done.stderr  # serve never starts private servers


def test_images_build_reports_cached_images(images) -> None:
    done = executor("images", "build", "busybox")
    assert done.returncode == 0 and "busybox: cached executor/busybox:latest" in done.stdout, done.stderr
