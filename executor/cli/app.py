"""The `executor` command: its parser, made of the command groups, and the dispatch that turns
every failure into one line on stderr and a documented exit code (exits.py, docs/cli.md)."""

from __future__ import annotations

import argparse
import os
import sys

from executor import __version__
from executor.cli import (
    agents,
    deliveries,
    entitlements,
    executions,
    images,
    receipts,
    secrets,
    server,
    status,
    tokens,
)
from executor.cli.exits import EXIT_CODES, CommandError, Exit
from executor.errors import ConfigurationError, DependencyUnavailable, ExecutorError, Problem

DESCRIPTION = """The executor service (server commands: up, serve, api, worker, migrate, images build,
keys, tokens --local) and a client of a running one (every other command: over HTTP with
$EXECUTOR_URL and $EXECUTOR_TOKEN, without reading the server's settings)."""

EPILOG = f"""environment (client commands):
  EXECUTOR_URL    the service (default: http://127.0.0.1:$EXECUTOR_PORT, else :8080); or --url
  EXECUTOR_TOKEN  a bearer token; or --token
  NO_COLOR        set to anything: no colour (https://no-color.org)
Server commands read EXECUTOR_* settings (README, docs/cli.md).

output: tables and records for people; --json prints one JSON document on stdout (a list: one
array). Progress and errors go to stderr; an error is one line, `executor: <what> (<slug>)`.

{EXIT_CODES}"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="executor", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"executor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server.register(commands)
    status.register(commands)
    executions.register(commands)
    agents.register(commands)
    entitlements.register(commands)
    tokens.register(commands)
    deliveries.register(commands)
    secrets.register(commands)
    images.register(commands)
    receipts.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # usage errors: exit 2 (argparse)
    try:
        code: int = args.run(args)
        return code
    except CommandError as error:
        return _fail(error)
    except ConfigurationError as error:
        return _fail(CommandError(str(error), "configuration_invalid", Exit.USAGE))
    except DependencyUnavailable as error:
        return _fail(CommandError(str(error), "dependency_unavailable", Exit.UNREACHABLE))
    except Problem as error:  # a domain refusal on the database path (tokens --local)
        code = {401: Exit.NOT_AUTHORIZED, 403: Exit.NOT_AUTHORIZED, 404: Exit.NOT_FOUND}.get(error.status, Exit.FAILED)
        return _fail(CommandError(error.detail, error.slug, code))
    except ExecutorError as error:
        return _fail(CommandError(str(error), "failed"))
    except KeyboardInterrupt:
        print("executor: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `executor executions list | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.FAILED


def _fail(error: CommandError) -> int:
    sys.stdout.flush()
    print(error.line(), file=sys.stderr)
    return int(error.code)
