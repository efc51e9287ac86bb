"""What every command group registers with: the options of client and server commands, and the
two ways a command runs.

- A client command talks to a running service over HTTP (`--url`, `--token`). It never loads the
  server's settings: an `EXECUTOR_*` variable it does not know, or a bad one, does not concern it.
- A server command acts on this host (PostgreSQL, Redis, the engine, the key ring): it loads the
  settings (`EXECUTOR_*`, refused when unknown or bad: exit 2) and configures logging."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from executor.cli.http import Api, default_url

if TYPE_CHECKING:
    from executor.settings import Settings

    # argparse's own, unexported, generic to type checkers only
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subcommands = argparse._SubParsersAction

CLIENT_VARIABLES = ("EXECUTOR_URL", "EXECUTOR_TOKEN")
Run = Callable[[argparse.Namespace], int]
ClientRun = Callable[[Api, argparse.Namespace], int]
ServerRun = Callable[["Settings", argparse.Namespace], int]


def _client_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("service")
    group.add_argument("--url", help="the service's base URL (default: $EXECUTOR_URL, else "
                                     "http://127.0.0.1:$EXECUTOR_PORT or :8080)")
    group.add_argument("--token", help="a bearer token (default: $EXECUTOR_TOKEN; prefer the variable: "
                                       "arguments show in `ps`)")
    group.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return options


def _server_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    return options


CLIENT_OPTIONS = _client_options()
SERVER_OPTIONS = _server_options()


def group(commands: Subcommands, name: str, help: str) -> Subcommands:
    """A command group (`executor executions …`): its own subcommands, one required."""
    parser = commands.add_parser(name, help=help, description=help)
    sub: Subcommands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    return sub


def client_command(commands: Subcommands, name: str, help: str, run: ClientRun) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help,
                                                          parents=[CLIENT_OPTIONS])

    def client(args: argparse.Namespace) -> int:
        api = Api(args.url or default_url(), args.token or os.environ.get("EXECUTOR_TOKEN") or None)
        return run(api, args)

    parser.set_defaults(run=client)
    return parser


def server_command(commands: Subcommands, name: str, help: str, run: ServerRun, *,
                   json_logs: bool = False, instance: bool = False) -> argparse.ArgumentParser:
    """`json_logs`: for the long-running commands, `--json` makes the log JSON lines (they print
    no result). `instance`: the process is an instance of the service (its id on every line)."""
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help,
                                                          parents=[SERVER_OPTIONS])

    def server(args: argparse.Namespace) -> int:
        return run(server_settings(json_logs=json_logs and args.json, instance=instance), args)

    parser.set_defaults(run=server)
    return parser


def server_settings(*, json_logs: bool = False, instance: bool = False) -> Settings:
    """The settings (EXECUTOR_*: exit 2 when unknown or bad), with logging configured."""
    from executor.observability.logs import configure_logging, set_instance
    from executor.settings import load_settings

    # The client commands' variables are not settings: a shell that exported them for those
    # still runs server commands (settings.CLIENT_VARIABLES names EXECUTOR_TOKEN already).
    settings = load_settings({k: v for k, v in os.environ.items() if k not in CLIENT_VARIABLES})
    # On stderr: human lines on a terminal, JSON lines otherwise (EXECUTOR_LOG_FORMAT; docs/logs.md).
    configure_logging("json" if json_logs else settings.log_format, no_color=bool(os.environ.get("NO_COLOR")))
    if instance:
        set_instance(settings.resolved_instance_id)
    return settings
