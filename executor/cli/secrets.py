"""`executor secrets set|list|delete|reseal`: an agent's secrets over the API (docs/secrets.md).

A value is read from stdin (typed without echo on a terminal) or from a file, never from the
command line, where `ps` and shell histories would show it; one trailing newline is dropped (what
`echo` and most editors add). Nothing printed ever holds a value."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from executor.cli.exits import CommandError, Exit
from executor.cli.http import Api, quote
from executor.cli.output import print_json, print_table, when
from executor.cli.parsing import Subcommands, client_command, group


def register(commands: Subcommands) -> None:
    secrets = group(commands, "secrets", "an agent's secrets for its egress: set, list, delete; reseal after a "
                                         "key rotation")
    put = client_command(secrets, "set", "write or replace a secret (its value from stdin or --file, never an "
                                         "argument)", _set)
    put.add_argument("agent", metavar="AGENT_ID")
    put.add_argument("name", metavar="NAME")
    put.add_argument("-f", "--file", metavar="FILE",
                     help="read the value from FILE ('-' or none: stdin; typed without echo on a terminal)")
    listing = client_command(secrets, "list", "an agent's secrets by name, with their versions (never a value)",
                             _list)
    listing.add_argument("agent", metavar="AGENT_ID")
    delete = client_command(secrets, "delete", "delete a secret", _delete)
    delete.add_argument("agent", metavar="AGENT_ID")
    delete.add_argument("name", metavar="NAME")
    client_command(secrets, "reseal", "after a key rotation: every secret under a previous key sealed under the "
                                      "current one (an operator token)", _reseal)


def read_value(path: str | None) -> str:
    """The value from a file or stdin, one trailing newline dropped; empty or unreadable is a usage error."""
    try:
        if path not in (None, "-"):
            raw = Path(path).read_bytes().decode()
        elif sys.stdin.isatty():
            raw = getpass.getpass("value (not echoed): ")
        else:
            raw = sys.stdin.buffer.read().decode()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", "usage", Exit.USAGE) from None
    except UnicodeDecodeError:
        raise CommandError(f"the value in {path or 'stdin'} is not UTF-8 text", "usage", Exit.USAGE) from None
    value = raw.removesuffix("\n").removesuffix("\r")
    if not value:
        raise CommandError(f"the value in {path or 'stdin'} is empty", "usage", Exit.USAGE)
    return value


def _path(args: argparse.Namespace) -> str:
    return f"/v1/agents/{quote(args.agent)}/secrets/{quote(args.name)}"


def _set(api: Api, args: argparse.Namespace) -> int:
    entry = api.call("PUT", _path(args), body={"value": read_value(args.file)})
    if args.json:
        print_json(entry)
    else:
        print(f"{entry['name']}: version {entry['version']}, written {when(entry['updated_at'])}")
    return 0


def _list(api: Api, args: argparse.Namespace) -> int:
    items = api.items(f"/v1/agents/{quote(args.agent)}/secrets")
    if args.json:
        print_json(items)
        return 0
    print_table(("NAME", "VERSION", "CREATED", "UPDATED"), [
        (s["name"], s["version"], when(s["created_at"]), when(s["updated_at"])) for s in items])
    return 0


def _delete(api: Api, args: argparse.Namespace) -> int:
    api.call("DELETE", _path(args))
    if args.json:
        print_json({"deleted": args.name})
    else:
        print(f"deleted {args.name}")
    return 0


def _reseal(api: Api, args: argparse.Namespace) -> int:
    report = api.call("POST", "/v1/secrets/reseal", timeout=600)
    if args.json:
        print_json(report)
        return 0
    print(f"re-sealed {report['resealed']} secret(s) under the current key")
    if report["unreadable"]:
        raise CommandError(f"{report['unreadable']} secret(s) are under a key the service does not hold (its log "
                           "names each key id): set it in EXECUTOR_SECRETS_PREVIOUS_KEYS and run again",
                           "secrets_unreadable")
    return 0
