"""`executor entitlements list|grant|revoke`."""

from __future__ import annotations

import argparse
from typing import Any

from executor.cli.http import Api, quote
from executor.cli.output import print_fields, print_json, print_table, short, when
from executor.cli.parsing import Subcommands, client_command, group


def register(commands: Subcommands) -> None:
    entitlements = group(commands, "entitlements", "entitlements: which user may run which agent")
    listing = client_command(entitlements, "list", "entitlements, newest first", _list)
    listing.add_argument("--user", metavar="SUBJECT")
    listing.add_argument("--agent", metavar="AGENT_ID")
    grant = client_command(entitlements, "grant", "grant a user an agent, or set its terms anew", _grant)
    grant.add_argument("--user", required=True, metavar="SUBJECT")
    grant.add_argument("--agent", required=True, metavar="AGENT_ID")
    grant.add_argument("--uses", type=int, metavar="N", help="how many runs (default: unlimited)")
    grant.add_argument("--expires", metavar="RFC3339", help="an instant such as 2027-01-31T00:00:00Z "
                                                            "(default: never)")
    revoke = client_command(entitlements, "revoke", "revoke an entitlement at once", _revoke)
    revoke.add_argument("id")


def _list(api: Api, args: argparse.Namespace) -> int:
    items = api.items("/v1/entitlements", query={"user": args.user, "agent_id": args.agent})
    if args.json:
        print_json(items)
        return 0
    print_table(("ID", "USER", "AGENT", "STATE", "USES LEFT", "USED", "EXPIRES", "CREATED"), [
        (e["id"], e["user"], short(e["agent_id"]), e["state"],
         "unlimited" if e["uses"] is None else e["uses_remaining"], e["uses_consumed"], when(e["expires_at"]),
         when(e["created_at"]))
        for e in items], status_column="STATE")
    return 0


def _grant(api: Api, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"user": args.user, "agent_id": args.agent}
    if args.uses is not None:
        body["uses"] = args.uses
    if args.expires is not None:
        body["expires_at"] = args.expires
    _show(api.call("PUT", "/v1/entitlements", body=body), as_json=args.json)
    return 0


def _revoke(api: Api, args: argparse.Namespace) -> int:
    _show(api.call("DELETE", f"/v1/entitlements/{quote(args.id)}"), as_json=args.json)
    return 0


def _show(entitlement: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print_json(entitlement)
        return
    print_fields([(key, when(value) if key.endswith("_at") else value) for key, value in entitlement.items()])
