"""`executor agents list|get|register` and `executor versions list|publish|deprecate|withdraw`."""

from __future__ import annotations

import json
import uuid

from tests.cli.conftest import Cli, as_json


def test_register_read_and_move_versions(cli: Cli, tmp_path) -> None:
    name = f"cli-{uuid.uuid4().hex[:10]}"
    body = {"name": name, "image": "executor/busybox:latest", "command": ["cat"],
            "input_schema": {"type": "object"}, "output_schema": True}
    (tmp_path / "agent.json").write_text(json.dumps(body))
    agent = as_json(cli("agents", "register", "-f", str(tmp_path / "agent.json"), "--json"))
    assert agent["name"] == name and agent["version"] == 1 and agent["status"] == "published"
    assert as_json(cli("agents", "get", agent["id"], "--json"))["id"] == agent["id"]
    assert agent["id"] in [a["id"] for a in as_json(cli("agents", "list", "--json"))]
    table = cli("agents", "list")
    assert table.stdout.splitlines()[0].split()[:2] == ["NAME", "ID"] and name in table.stdout

    version = {k: v for k, v in body.items() if k != "name"} | {"command": ["sh", "-c", "cat"]}
    published = cli("versions", "publish", agent["id"], "-f", "-", "--json", stdin=json.dumps(version))
    assert as_json(published)["version"] == 2
    assert as_json(cli("versions", "deprecate", agent["id"], "1", "--json"))["status"] == "deprecated"
    assert as_json(cli("versions", "withdraw", agent["id"], "1", "--json"))["status"] == "withdrawn"
    listed = as_json(cli("versions", "list", agent["id"], "--json"))
    assert [(v["version"], v["status"]) for v in listed] == [(1, "withdrawn"), (2, "published")]
    shown = cli("agents", "get", agent["id"])
    assert shown.returncode == 0 and "version:" in shown.stdout and "sh -c cat" in shown.stdout
