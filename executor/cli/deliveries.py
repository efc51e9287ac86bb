"""`executor deliveries list|resend`: an execution's webhook deliveries, and sending a failed one again."""

from __future__ import annotations

import argparse
from typing import Any

from executor.cli.http import Api, quote
from executor.cli.output import print_fields, print_json, print_table, when
from executor.cli.parsing import Subcommands, client_command, group


def register(commands: Subcommands) -> None:
    deliveries = group(commands, "deliveries", "an execution's webhook deliveries: list, resend")
    listing = client_command(deliveries, "list", "the deliveries made for an execution, oldest first", _list)
    listing.add_argument("execution_id")
    resend = client_command(deliveries, "resend", "send a failed delivery again (same id and payload, due now)",
                            _resend)
    resend.add_argument("execution_id")
    resend.add_argument("delivery_id")


def _list(api: Api, args: argparse.Namespace) -> int:
    items = api.items(f"/v1/executions/{quote(args.execution_id)}/webhooks")
    if args.json:
        print_json(items)
        return 0
    print_table(("ID", "EVENT", "STATUS", "ATTEMPTS", "NEXT", "DELIVERED", "LAST ERROR", "URL"), [
        (d["id"], d["event_type"], d["status"], d["attempt_count"], when(d["next_attempt_at"]),
         when(d["delivered_at"]), d["last_error"], d["url"])
        for d in items], status_column="STATUS")
    return 0


def _resend(api: Api, args: argparse.Namespace) -> int:
    path = f"/v1/executions/{quote(args.execution_id)}/webhooks/{quote(args.delivery_id)}/resend"
    delivery: dict[str, Any] = api.call("POST", path)
    if args.json:
        print_json(delivery)
        return 0
    print_fields([(key, when(value) if key.endswith("_at") else value)
                  for key, value in delivery.items() if key != "attempts"])
    return 0
