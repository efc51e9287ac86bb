"""`executor entitlements list|grant|revoke`."""

from __future__ import annotations

import uuid

from tests.cli.conftest import Cli, as_json, one_line_error


async def test_grant_list_revoke(cli: Cli, api) -> None:
    agent_id = await api.register(["cat"])
    user = f"u-{uuid.uuid4().hex[:8]}"
    granted = as_json(cli("entitlements", "grant", "--user", user, "--agent", agent_id, "--uses", "3",
                          "--expires", "2099-01-31T00:00:00Z", "--json"))
    assert granted["user"] == user and granted["uses"] == 3 and granted["state"] == "live"
    listed = as_json(cli("entitlements", "list", "--user", user, "--json"))
    assert [e["id"] for e in listed] == [granted["id"]]
    table = cli("entitlements", "list", "--agent", agent_id)
    assert table.stdout.splitlines()[0].split()[:2] == ["ID", "USER"] and user in table.stdout
    revoked = as_json(cli("entitlements", "revoke", granted["id"], "--json"))
    assert revoked["state"] == "revoked" and revoked["revoked_at"]
    one_line_error(cli("entitlements", "grant", "--user", user, "--agent", str(uuid.uuid4())), 5, "not_found")
    refused = cli("entitlements", "grant", "--user", user, "--agent", agent_id, "--expires", "tomorrow")
    one_line_error(refused, 1, "request_invalid")
