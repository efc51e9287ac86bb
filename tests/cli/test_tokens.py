"""`executor tokens list|create|revoke` over the API (`--local`, on the database: test_server.py)."""

from __future__ import annotations

import uuid

from tests.cli.conftest import Cli, as_json, one_line_error


def test_create_list_revoke_over_the_api(cli: Cli) -> None:
    subject = f"cli-{uuid.uuid4().hex[:8]}"
    issued = as_json(cli("tokens", "create", "user", subject, "--json"))
    assert issued["role"] == "user" and issued["subject"] == subject and issued["token"].startswith("exe_")
    assert issued["created_by"] and issued["created_by"].startswith("operator:")
    assert as_json(cli("executions", "list", "--json", token=issued["token"])) == []  # it works

    listed = as_json(cli("tokens", "list", "--subject", subject, "--json"))
    assert [t["id"] for t in listed] == [issued["id"]] and "token" not in listed[0]
    table = cli("tokens", "list", "--role", "user", "--subject", subject)
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "ROLE", "SUBJECT"] and issued["id"] in table.stdout

    revoked = as_json(cli("tokens", "revoke", issued["id"], "--json"))
    assert revoked["id"] == issued["id"] and revoked["revoked_at"]
    one_line_error(cli("executions", "list", token=issued["token"]), 4, "unauthenticated")

    plain = cli("tokens", "create", "--role", "user", "--subject", subject)  # the older form still works
    assert plain.returncode == 0 and plain.stdout.strip().startswith("exe_") and len(plain.stdout.splitlines()) == 1
    assert "shown once" in plain.stderr

    shop = as_json(cli("tokens", "create", "service", f"shop-{subject}", "--priorities", "high,normal", "--json"))
    assert shop["priorities"] == ["high", "normal"], shop
    one_line_error(cli("tokens", "create", "user", subject, "--priorities", "high,normal"), 1, "request_invalid")
    usage = cli("tokens", "create", "service", subject, "--priorities", "urgent")
    assert usage.returncode == 2 and "high, normal, low" in usage.stderr


def test_a_user_token_may_not_manage_tokens(cli: Cli) -> None:
    issued = as_json(cli("tokens", "create", "user", f"cli-{uuid.uuid4().hex[:8]}", "--json"))
    one_line_error(cli("tokens", "list", token=issued["token"]), 4, "forbidden")
