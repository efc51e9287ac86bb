"""`executor executions list|get|wait|cancel|logs`."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from executor.cli.exits import CommandError, Exit
from executor.cli.http import Api, quote
from executor.cli.output import Progress, print_fields, print_json, print_table, short, when
from executor.cli.parsing import Subcommands, client_command, group

STATUSES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED")  # records.executions.Status
FINAL = frozenset(STATUSES[2:])
WAIT_CHUNK_S = 25.0  # each GET ?wait=: below the service's EXECUTOR_MAX_WAIT_S (60 by default)


def register(commands: Subcommands) -> None:
    executions = group(commands, "executions", "executions: list, read, wait for, cancel, read the log")
    listing = client_command(executions, "list", "executions the token may see, newest first", _list)
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--agent", metavar="AGENT_ID")
    listing.add_argument("--user", metavar="SUBJECT")
    listing.add_argument("--since", type=_instant, metavar="TIME",
                         help="created at or after TIME (RFC 3339 with its offset, e.g. 2026-12-06T09:00:00Z)")
    listing.add_argument("--before", type=_instant, metavar="TIME", help="created strictly before TIME")
    listing.add_argument("--limit", type=_positive, metavar="N", help="at most N (default: all)")
    get = client_command(executions, "get", "one execution's record", _get)
    get.add_argument("id")
    wait = client_command(executions, "wait", "wait for an execution to end; exit 1 unless it COMPLETED", _wait)
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long (exit 1; "
                                                                      "default: wait until it ends)")
    cancel = client_command(executions, "cancel", "cancel an execution (no-op once it has ended)", _cancel)
    cancel.add_argument("id")
    logs = client_command(executions, "logs", "the task's log (its stderr, as captured)", _logs)
    logs.add_argument("id")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _instant(text: str) -> str:
    """An RFC 3339 instant, normalised to UTC (a `+` would not survive a query string unquoted)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError("not an RFC 3339 date-time such as 2026-12-06T09:00:00Z") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("the date-time needs an offset (Z or +hh:mm)")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _list(api: Api, args: argparse.Namespace) -> int:
    items = api.items("/v1/executions", query={
        "status": args.status, "agent_id": args.agent, "user": args.user,
        "created_since": args.since, "created_before": args.before}, limit=args.limit)
    if args.json:
        print_json(items)
        return 0
    print_table(("ID", "STATUS", "AGENT", "VERSION", "OWNER", "CREATED", "WALL"), [
        (e["id"], e["status"], short(e["agent_id"]), e["agent_version"], e["owner"], when(e["created_at"]),
         _millis((e.get("usage") or {}).get("wall_ms")))
        for e in items], status_column="STATUS")
    return 0


def _get(api: Api, args: argparse.Namespace) -> int:
    record = api.call("GET", f"/v1/executions/{quote(args.id)}")
    _show(record, as_json=args.json)
    return 0


def _cancel(api: Api, args: argparse.Namespace) -> int:
    record = api.call("POST", f"/v1/executions/{quote(args.id)}/cancel")
    if args.json:
        print_json(record)
    else:
        print(f"{record['id']}: {record['status']}")
    return 0


def _logs(api: Api, args: argparse.Namespace) -> int:
    text = api.call("GET", f"/v1/executions/{quote(args.id)}/logs", raw=True)
    if args.json:
        print_json({"id": args.id, "log": text.decode("utf-8", "replace")})
    else:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
    return 0


def _wait(api: Api, args: argparse.Namespace) -> int:
    path = f"/v1/executions/{quote(args.id)}"
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    chunk = WAIT_CHUNK_S
    status = None
    with Progress(f"waiting for {short(args.id)}") as progress:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            wait = chunk if left is None else max(0.0, min(chunk, left))
            try:
                record = api.call("GET", path, query={"wait": f"{wait:g}"}, timeout=wait + 30)
            except CommandError as error:
                if error.slug != "request_invalid" or chunk < 1:
                    raise
                chunk /= 2  # the operator's EXECUTOR_MAX_WAIT_S is below ours
                continue
            if record["status"] != status:
                status = record["status"]
                progress.step(f"{args.id}: {status}")
            if status in FINAL:
                break
            if left is not None and left <= 0:
                _show(record, as_json=args.json)
                raise CommandError(f"execution {args.id} is still {status} after {args.timeout:g} s", "timeout")
            if chunk < 1:
                time.sleep(1.0)
    _show(record, as_json=args.json)
    if status != "COMPLETED":
        failure = record.get("error") or {}
        why = f": {failure.get('type')}: {failure.get('detail')}" if failure else ""
        raise CommandError(f"execution {args.id} ended {status}{why}", "execution_failed", Exit.FAILED)
    return 0


def _show(record: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print_json(record)
        return
    usage = record.get("usage") or {}
    error = record.get("error")
    cost = record.get("cost")
    print_fields([
        ("id", record["id"]),
        ("status", record["status"]),
        ("agent", f"{record['agent_id']} v{record['agent_version']}"),
        ("owner", record["owner"]),
        ("created", when(record["created_at"])),
        ("started", when(record["started_at"])),
        ("finished", when(record["finished_at"])),
        ("exit code", record["exit_code"]),
        ("error", f"{error['type']}: {error['detail']}" if error else None),
        ("wall", _millis(usage.get("wall_ms"))),
        ("cpu", _millis(usage.get("cpu_ms"))),
        ("peak memory", None if usage.get("peak_memory_bytes") is None else
         f"{usage['peak_memory_bytes'] / 1e6:.1f} MB"),
        ("cost", None if not cost else
         f"{cost['amount'] / 10 ** cost['decimals']:.{cost['decimals']}f} {cost['currency']}"),
        ("output", record["output"]),
    ])


def _millis(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value} ms" if value < 10_000 else f"{value / 1000:.1f} s"
