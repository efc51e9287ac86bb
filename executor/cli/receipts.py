"""`executor keys rotate|list|retire` (server commands: the key ring of this host and its
database), `executor receipts verify` and `executor log audit` (what an outside party runs:
public endpoints and public keys only, no token, no settings)."""

from __future__ import annotations

import argparse
import contextlib
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from executor.cli.exits import CommandError, Exit
from executor.cli.http import default_url
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
    verify.add_argument("--json", action="store_true", help="print the whole report as one JSON document")
    verify.set_defaults(run=_verify)

    log = group(commands, "log", "the transparency log")
    audit = log.add_parser("audit", help="fetch heads over time and check each extends the last",
                           description="fetch heads over time and check each extends the last; exit 1 when one "
                                       "does not (no --json: one line a round)")
    audit.add_argument("--url", help="the service's base URL (default: $EXECUTOR_URL, else http://127.0.0.1:8080)")
    audit.add_argument("--keys", help="a JWK set file or URL (default: the service's /v1/keys)")
    audit.add_argument("--state", default="executor-log-head.json", help="where the last verified head is kept")
    audit.add_argument("--rounds", type=int, default=1)
    audit.add_argument("--interval", type=float, default=60.0, help="seconds between rounds")
    audit.set_defaults(run=_audit)


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from executor.cli.server import existing_database_url
    from executor.receipts import commands

    if args.action == "rotate":
        try:
            database_url: str | None = existing_database_url(settings)
        except ConfigurationError:
            database_url = None  # the service publishes the new key itself when it starts
        return commands.rotate(settings, database_url)
    if args.action == "list":
        return commands.list_keys(settings, existing_database_url(settings))
    return commands.retire(settings, existing_database_url(settings), args.kid)


def _verify(args: argparse.Namespace) -> int:
    from executor.receipts import commands

    keys = args.keys or (args.url or default_url()).rstrip("/") + "/v1/keys"
    with _fetch_errors():
        return commands.verify(args.receipt, keys_source=keys, input_path=args.input, output_path=args.output,
                               head_path=args.head, as_json=args.json)


def _audit(args: argparse.Namespace) -> int:
    from executor.receipts import commands

    base_url = (args.url or default_url()).rstrip("/")
    with _fetch_errors():
        return commands.audit(base_url, keys_source=args.keys or base_url + "/v1/keys", state_path=Path(args.state),
                              rounds=args.rounds, interval_s=args.interval)


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

