"""Every command takes `--json` (docs/cli.md, *Output*): the parser is walked, so a command added
later without it fails here."""

from __future__ import annotations

import argparse
import contextlib
import io
from collections.abc import Iterator

import pytest

from executor.cli.app import build_parser


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                         argparse.ArgumentParser]]:
    """(words, parser) of every runnable command: the leaves of the subcommand tree."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path, parser
        return
    for action in subparsers:
        for name, child in action.choices.items():
            yield from commands(child, (*path, name))


ALL = list(commands(build_parser()))


def test_the_walk_finds_the_commands() -> None:
    found = {" ".join(words) for words, _ in ALL}
    assert {"up", "migrate", "images build", "keys list", "keys rotate", "keys retire", "receipts verify",
            "log audit", "executions list", "tokens create"} <= found, found


@pytest.mark.parametrize(("words", "parser"), ALL, ids=[" ".join(words) for words, _ in ALL])
def test_every_command_takes_json(words: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    assert "--json" in parser._option_string_actions, f"`executor {' '.join(words)}` has no --json"
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), pytest.raises(SystemExit) as done:
        build_parser().parse_args([*words, "--help"])
    assert done.value.code == 0 and "--json" in shown.getvalue(), shown.getvalue()
