"""`executor keys rotate|list|retire` (server commands: the key ring of this host and its
database), `executor receipts verify` and `executor log audit` (what an outside party runs:
public endpoints and public keys only, no token, no settings).

executor.receipts.commands does the work and returns records; this module prints them: for
people by default, one JSON document with `--json` (`log audit --json`: one JSON object a round,
a line each, as each round ends). `keys rotate` and `keys retire` print JSON either way."""

from __future__ import annotations

import argparse
import contextlib
import json
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from executor.cli.exits import CommandError, Exit
from executor.cli.http import default_url
from executor.cli.output import print_json, print_table, when
from executor.cli.parsing import Subcommands, group, server_command
from executor.errors import ConfigurationError, ExecutorError

if TYPE_CHECKING:
    from executor.settings import Settings


def register(commands: Subcommands) -> None:
    keys = group(commands, "keys", "this host's signing keys: rotate, list, retire")
    server_command(keys, "rotate", "a new signing key for this host; older keys stay published", _keys)
    server_command(keys, "list", "published keys, retired ones included", _keys)
    retire = server_command(keys, "retire", "stop publishing a key and drop its private half", _keys)
    retire.add_argument("kid")

    receipts = group(commands, "receipts", "receipts, checked offline")
    verify = receipts.add_parser("verify", help="check a receipt bundle offline; exit 1 when it does not hold",
                                 description="check a receipt bundle offline; exit 1 when it does not hold")
    verify.add_argument("receipt", help="the JSON of GET /v1/executions/{id}/receipt ('-' for stdin)")
    verify.add_argument("--keys", help="a JWK set file or URL (default: the service's /v1/keys, see --url)")
    verify.add_argument("--url", help="the service whose /v1/keys to trust when --keys is not given "
                                      "(default: $EXECUTOR_URL, else http://127.0.0.1:8080)")
    verify.add_argument("--input", help="the exact input bytes (GET /v1/executions/{id}/input)")
    verify.add_argument("--output", help="the exact output bytes (GET /v1/executions/{id}/stdout)")
    verify.add_argument("--head", help="a signed tree head kept from earlier (GET /v1/log/head)")
    verify.add_argument("--egress", help="the execution's egress list as JSON (GET /v1/executions/{id}/egress, "
                                         "or just its `data`): checked against the receipt's egress digest")
    verify.add_argument("--json", action="store_true", help="print the whole report as one JSON document on stdout")
    verify.set_defaults(run=_verify)

    log = group(commands, "log", "the transparency log")
    audit = log.add_parser("audit", help="fetch heads over time and check each extends the last",
                           description="fetch heads over time and check each extends the last; exit 1 when one "
                                       "does not: one line a round (--json: one JSON object a round)")
    audit.add_argument("--url", help="the service's base URL (default: $EXECUTOR_URL, else http://127.0.0.1:8080)")
    audit.add_argument("--keys", help="a JWK set file or URL (default: the service's /v1/keys)")
    audit.add_argument("--state", default="executor-log-head.json", help="where the last verified head is kept")
    audit.add_argument("--rounds", type=int, default=1)
    audit.add_argument("--interval", type=float, default=60.0, help="seconds between rounds")
    audit.add_argument("--json", action="store_true",
                       help="one JSON object a round on stdout, a line each (JSON Lines)")
    audit.set_defaults(run=_audit)


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from executor.cli.server import existing_database_url
    from executor.receipts import commands

    if args.action == "rotate":
        try:
            database_url: str | None = existing_database_url(settings)
        except ConfigurationError:
            database_url = None  # the service publishes the new key itself when it starts
        _print_record(commands.rotate(settings, database_url), pretty=args.json)
        return 0
    if args.action == "list":
        keys = commands.list_keys(settings, existing_database_url(settings))
        if args.json:
            print_json(keys)
        else:
            print_table(["KID", "CREATED", "STATE", "RETIRED", "NOTES"],
                        [[key["kid"], when(key["created_at"]), "retired" if key["retired_at"] else "published",
                          when(key["retired_at"]),
                          ", ".join(note for note, holds in (("signing", key["signing"]),
                                                             ("held here", key["held_here"])) if holds)]
                         for key in keys], status_column="STATE")
        return 0
    _print_record(commands.retire(settings, existing_database_url(settings), args.kid), pretty=args.json)
    return 0


def _print_record(record: dict[str, object], *, pretty: bool) -> None:
    """`keys rotate|retire` print JSON with or without --json (one line; --json: indented)."""
    if pretty:
        print_json(record)
    else:
        print(json.dumps(record), flush=True)


def _verify(args: argparse.Namespace) -> int:
    from executor.receipts import commands

    keys = args.keys or (args.url or default_url()).rstrip("/") + "/v1/keys"
    with _fetch_errors():
        report = commands.verify(args.receipt, keys_source=keys, input_path=args.input, output_path=args.output,
                                 head_path=args.head, egress_path=args.egress)
    if args.json:
        print_json(report.to_dict())
    else:
        print(commands.describe(report))
    return 0 if report.valid else Exit.FAILED


def _audit(args: argparse.Namespace) -> int:
    from executor.receipts import commands

    base_url = (args.url or default_url()).rstrip("/")
    with _fetch_errors():
        for checked in commands.audit(base_url, keys_source=args.keys or base_url + "/v1/keys",
                                      state_path=Path(args.state), rounds=args.rounds, interval_s=args.interval):
            if args.json:
                print(json.dumps(checked.to_dict(), ensure_ascii=False), flush=True)
            elif not checked.valid:
                print(commands.describe(checked.report, what="log"), flush=True)
            else:
                print(f"ok: head of size {checked.tree_size} (root {(checked.root_hash or '')[:16]}…, "
                      f"{checked.timestamp})"
                      + (f" extends the kept head of size {checked.kept_tree_size}"
                         if checked.kept_tree_size is not None else ", kept as the first head"), flush=True)
            if not checked.valid:
                return Exit.FAILED
    return 0


@contextlib.contextmanager
def _fetch_errors() -> Iterator[None]:
    """What executor.receipts.commands raises, as one line and the exit code of its cause."""
    try:
        yield
    except ExecutorError as exc:
        cause = exc.__cause__
        if isinstance(cause, urllib.error.HTTPError):
            code = {401: Exit.NOT_AUTHORIZED, 403: Exit.NOT_AUTHORIZED, 404: Exit.NOT_FOUND}.get(cause.code,
                                                                                                Exit.FAILED)
            raise CommandError(str(exc), f"http_{cause.code}", code) from None
        if isinstance(cause, urllib.error.URLError | TimeoutError | ConnectionError):
            raise CommandError(str(exc), "service_unreachable", Exit.UNREACHABLE) from None
        raise CommandError(str(exc), "failed") from None

