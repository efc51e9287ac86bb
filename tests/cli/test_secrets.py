"""`executor secrets set|list|delete|reseal` over the API: the value from stdin or a file, never an
argument, and never printed."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.cli.conftest import Cli, as_json, one_line_error


def _agent(cli: Cli) -> str:
    body = {"name": f"cli-secrets-{uuid.uuid4().hex[:8]}", "image": "executor/busybox:latest", "command": ["cat"],
            "input_schema": {"type": "object"}, "output_schema": True}
    return str(as_json(cli("agents", "register", "-f", "-", "--json", stdin=json.dumps(body)))["id"])


def test_set_list_delete_and_reseal(cli: Cli, tmp_path: Path) -> None:
    agent = _agent(cli)
    first, second = f"cli-first-{uuid.uuid4().hex}", f"cli-second-{uuid.uuid4().hex}"

    done = cli("secrets", "set", agent, "api_key", stdin=first + "\n")  # from stdin, echo's newline dropped
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("api_key: version 1") and first not in done.stdout + done.stderr
    secret_file = tmp_path / "value"
    secret_file.write_text(second)
    written = as_json(cli("secrets", "set", agent, "api_key", "--file", str(secret_file), "--json"))
    assert written["name"] == "api_key" and written["version"] == 2 and set(written) == {
        "name", "version", "created_at", "updated_at"}

    listed = cli("secrets", "list", agent, "--json")
    assert [(s["name"], s["version"]) for s in as_json(listed)] == [("api_key", 2)]
    table = cli("secrets", "list", agent)
    assert table.stdout.split()[:4] == ["NAME", "VERSION", "CREATED", "UPDATED"] and "api_key" in table.stdout
    for shown in (listed, table):
        assert first not in shown.stdout and second not in shown.stdout

    assert as_json(cli("secrets", "reseal", "--json")) == {"resealed": 0, "unreadable": 0}  # one key: nothing to move
    assert cli("secrets", "reseal").stdout.startswith("re-sealed 0 secret(s)")

    assert cli("secrets", "delete", agent, "api_key").stdout.strip() == "deleted api_key"
    one_line_error(cli("secrets", "delete", agent, "api_key"), 5, "not_found")
    assert as_json(cli("secrets", "list", agent, "--json")) == []


def test_refusals(cli: Cli) -> None:
    agent = _agent(cli)
    usage = cli("secrets", "set", agent, "api_key", "a-value-on-the-command-line")
    assert usage.returncode == 2 and "a-value-on-the-command-line" not in usage.stdout  # no such argument
    one_line_error(cli("secrets", "set", agent, "api_key", stdin=""), 2, "usage")
    one_line_error(cli("secrets", "set", agent, "api_key", "--file", "/nonexistent/value"), 2, "usage")
    one_line_error(cli("secrets", "set", str(uuid.uuid4()), "api_key", stdin="v"), 5, "not_found")
    one_line_error(cli("secrets", "set", agent, "9lives", stdin="v"), 1, "request_invalid")
    user = as_json(cli("tokens", "create", "user", f"cli-{uuid.uuid4().hex[:8]}", "--json"))["token"]
    one_line_error(cli("secrets", "list", agent, token=user), 4, "forbidden")
    one_line_error(cli("secrets", "reseal", token=user), 4, "forbidden")
