"""The server commands against real servers: migrate, tokens --local (the way to a first
token), bad settings, and the failures of an unreachable dependency (one line, exit 3)."""

from __future__ import annotations

import json

from executor.embedded import free_port
from tests.cli.conftest import one_line_error, run


async def test_migrate_then_tokens_create_gives_a_working_token(postgres, service, api) -> None:
    database_url = postgres.create_database("cli_db")
    first = run("migrate", env={"EXECUTOR_DATABASE_URL": database_url})
    assert first.returncode == 0 and "0001_initial.sql" in first.stdout, first.stderr
    again = run("migrate", "--json", env={"EXECUTOR_DATABASE_URL": database_url})
    assert again.returncode == 0 and json.loads(again.stdout) == {"applied": []}, again.stderr
    again = run("migrate", env={"EXECUTOR_DATABASE_URL": database_url})
    assert again.returncode == 0 and "up to date" in again.stdout

    # No token: on the database (docker-compose run --rm migrate tokens create …, docs/tokens.md).
    created = run("tokens", "create", "--role", "user", "--subject", "cli-user", "--json",
                  env={"EXECUTOR_DATABASE_URL": service.env["EXECUTOR_DATABASE_URL"]})
    assert created.returncode == 0, created.stderr
    issued = json.loads(created.stdout)
    assert issued["role"] == "user" and issued["token"].startswith("exe_") and issued["created_by"] is None
    assert issued["token"] not in created.stderr  # printed once, on stdout only
    status, page, _ = await api.as_token(issued["token"]).get("/v1/executions")
    assert status == 200 and page["items"] == []

    listed = run("tokens", "list", "--local", "--subject", "cli-user", "--json",  # --local: even with a token
                 env={"EXECUTOR_DATABASE_URL": service.env["EXECUTOR_DATABASE_URL"], "EXECUTOR_TOKEN": "exe_x"})
    assert [t["id"] for t in json.loads(listed.stdout)] == [issued["id"]], listed.stderr
    revoked = run("tokens", "revoke", "--local", issued["id"], "--json",
                  env={"EXECUTOR_DATABASE_URL": service.env["EXECUTOR_DATABASE_URL"]})
    assert json.loads(revoked.stdout)["revoked_at"] is not None, revoked.stderr
    status, _, _ = await api.as_token(issued["token"]).get("/v1/executions")
    assert status == 401


def test_tokens_without_a_token_or_a_database(tmp_path) -> None:
    done = run("tokens", "list", env={"EXECUTOR_STATE_DIR": str(tmp_path)})
    one_line_error(done, 2, "configuration_invalid")
    assert "no token" in done.stderr and "EXECUTOR_DATABASE_URL" in done.stderr


def test_bad_settings_are_refused_clearly() -> None:
    done = run("migrate", env={"EXECUTOR_PORT": "eighty"})
    one_line_error(done, 2, "configuration_invalid")
    assert "EXECUTOR_PORT" in done.stderr
    # EXECUTOR_URL and EXECUTOR_TOKEN are the client commands': never an unknown setting.
    done = run("serve", env={"EXECUTOR_DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
                             "EXECUTOR_URL": "http://127.0.0.1:1", "EXECUTOR_TOKEN": "exe_x"})
    assert done.returncode == 2 and "EXECUTOR_REDIS_URL" in done.stderr  # serve never starts private servers


def test_migrate_against_an_unreachable_database_is_one_line() -> None:
    """The service retries PostgreSQL at start; the one-shot command tries once (--wait to retry)."""
    done = run("migrate", env={"EXECUTOR_DATABASE_URL": f"postgresql://x@127.0.0.1:{free_port()}/x"}, timeout=20)
    one_line_error(done, 3, "dependency_unavailable")
    assert done.stdout == ""


def test_images_build_without_an_engine_is_one_line() -> None:
    done = run("images", "build", "busybox", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    one_line_error(done, 3, "dependency_unavailable")


def test_images_build_reports_cached_images(images) -> None:
    done = run("images", "build", "busybox")
    assert done.returncode == 0 and "busybox: cached executor/busybox:latest" in done.stdout, done.stderr
    built = json.loads(run("images", "build", "busybox", "--json").stdout)
    assert built == [{"name": "busybox", "tag": "executor/busybox:latest", "id": built[0]["id"], "cached": True}]
    unknown = run("images", "build", "no-such-image")
    one_line_error(unknown, 1, "image_build_failed")
