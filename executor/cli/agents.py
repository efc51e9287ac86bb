"""`executor agents list|get|register` and `executor versions list|publish|deprecate|withdraw`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from executor.cli.exits import CommandError, Exit
from executor.cli.http import Api, quote
from executor.cli.output import print_fields, print_json, print_table, when
from executor.cli.parsing import Subcommands, client_command, group


def register(commands: Subcommands) -> None:
    agents = group(commands, "agents", "agents: list, read, register")
    client_command(agents, "list", "agents by name, each at its newest version", _list)
    get = client_command(agents, "get", "an agent at its newest version", _get)
    get.add_argument("id")
    add = client_command(agents, "register", "register an agent (its version 1)", _register)
    add.add_argument("-f", "--file", required=True, metavar="FILE",
                     help="the JSON body of POST /v1/agents ('-' for stdin)")

    versions = group(commands, "versions", "an agent's immutable versions: list, publish, deprecate, withdraw")
    listing = client_command(versions, "list", "an agent's versions, oldest first", _versions)
    listing.add_argument("agent", metavar="AGENT_ID")
    publish = client_command(versions, "publish", "publish a new version of an agent", _publish)
    publish.add_argument("agent", metavar="AGENT_ID")
    publish.add_argument("-f", "--file", required=True, metavar="FILE",
                         help="the JSON body of POST /v1/agents/{id}/versions ('-' for stdin)")
    for action, help in (("deprecate", "deprecate a version (it still runs when named)"),
                         ("withdraw", "withdraw a version (it never runs again)")):
        move = client_command(versions, action, help, _move)
        move.add_argument("agent", metavar="AGENT_ID")
        move.add_argument("version", type=int)


def read_body(path: str) -> Any:
    """A JSON request body from a file or stdin; unreadable or not JSON is a usage error."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        return json.loads(text)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", "usage", Exit.USAGE) from None
    except ValueError as exc:
        raise CommandError(f"{path} is not JSON: {exc}", "usage", Exit.USAGE) from None


def _list(api: Api, args: argparse.Namespace) -> int:
    _table(api.items("/v1/agents"), as_json=args.json)
    return 0


def _versions(api: Api, args: argparse.Namespace) -> int:
    _table(api.items(f"/v1/agents/{quote(args.agent)}/versions"), as_json=args.json)
    return 0


def _table(items: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print_json(items)
        return
    print_table(("NAME", "ID", "KIND", "VERSION", "STATUS", "IMAGE", "CREATED"), [
        (a["name"], a["id"], a["kind"], a["version"], a["status"], a["image"], when(a["created_at"]))
        for a in items], status_column="STATUS")


def _get(api: Api, args: argparse.Namespace) -> int:
    show(api.call("GET", f"/v1/agents/{quote(args.id)}"), as_json=args.json)
    return 0


def _register(api: Api, args: argparse.Namespace) -> int:
    show(api.call("POST", "/v1/agents", body=read_body(args.file)), as_json=args.json)
    return 0


def _publish(api: Api, args: argparse.Namespace) -> int:
    show(api.call("POST", f"/v1/agents/{quote(args.agent)}/versions", body=read_body(args.file)), as_json=args.json)
    return 0


def _move(api: Api, args: argparse.Namespace) -> int:
    path = f"/v1/agents/{quote(args.agent)}/versions/{args.version}/{args.action}"
    show(api.call("POST", path), as_json=args.json)
    return 0


def show(agent: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print_json(agent)
        return
    print_fields([
        ("id", agent["id"]), ("name", agent["name"]), ("kind", agent["kind"]), ("version", agent["version"]),
        ("status", agent["status"]), ("image", agent["image"]), ("image digest", agent["image_digest"]),
        ("command", " ".join(agent["command"]) if agent["command"] else None), ("runtime", agent["runtime"]),
        ("limits", agent["limits"]), ("pricing", agent["pricing"]), ("created", when(agent["created_at"])),
        ("description", agent["description"]),
    ])
