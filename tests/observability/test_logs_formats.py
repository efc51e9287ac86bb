"""Log formats (pure): human lines on a terminal, JSON lines otherwise; colour only on a terminal
and never with NO_COLOR; a record's own fields and the request id in both."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator

import pytest

from executor.observability.logs import (
    HumanFormatter,
    JsonFormatter,
    bind_execution,
    bind_request,
    current_request,
    make_handler,
    resolve_format,
)

TOKEN = "exe_" + "Z9y8X7w6" * 5
HUMAN_LINE = re.compile(r"(\d\d:\d\d:\d\d\.\d{3}) (\S+) +(\S+) (.*)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Closed(io.StringIO):
    def isatty(self) -> bool:
        raise ValueError("I/O operation on closed file")


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(f"test.logs.formats.{uuid.uuid4().hex[:6]}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)


def write(logger: logging.Logger, handler: logging.Handler, *args: object, **kwargs: object) -> None:
    logger.addHandler(handler)
    try:
        logger.warning(*args, **kwargs)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("stream, expected", [(io.StringIO(), "json"), (Terminal(), "human"), (Closed(), "json")])
def test_auto_is_human_on_a_terminal_and_json_otherwise(stream: io.StringIO, expected: str) -> None:
    assert resolve_format("auto", stream) == expected
    handler = make_handler("auto", stream)
    assert isinstance(handler.formatter, HumanFormatter if expected == "human" else JsonFormatter)


@pytest.mark.parametrize("fmt, formatter", [("json", JsonFormatter), ("human", HumanFormatter),
                                             ("text", HumanFormatter)])
def test_an_explicit_format_holds_whatever_the_stream(fmt: str, formatter: type) -> None:
    for stream in (io.StringIO(), Terminal()):
        assert isinstance(make_handler(fmt, stream).formatter, formatter)
    with pytest.raises(ValueError, match="auto, human, json"):
        resolve_format("yaml", io.StringIO())


def test_a_human_line_is_time_level_logger_message_then_pairs(logger: logging.Logger) -> None:
    buffer = io.StringIO()
    with bind_execution("e-1"), bind_request("r-1"):
        write(logger, make_handler("human", buffer), "took %d ms for %s", 12, TOKEN,
              extra={"fields": {"status": 200, "route": "/v1/executions/{id}", "principal": None,
                                "note": "two words", "quote": 'say "hi"'}})
    (line,) = buffer.getvalue().splitlines()
    assert "\x1b" not in line  # not a terminal: no colour
    _clock, level, name, rest = HUMAN_LINE.fullmatch(line).groups()  # type: ignore[union-attr]
    assert (level, name) == ("WARNING", logger.name)
    assert rest == ('took 12 ms for exe_[REDACTED] status=200 route=/v1/executions/{id} note="two words" '
                    'quote="say \\"hi\\"" execution_id=e-1 request_id=r-1')


def test_human_lines_are_coloured_on_a_terminal(logger: logging.Logger) -> None:
    terminal = Terminal()
    write(logger, make_handler("human", terminal), "careful", extra={"fields": {"k": "v"}})
    line = terminal.getvalue().rstrip("\n")
    assert "\x1b[33mWARNING\x1b[0m" in line and "\x1b[2mk=\x1b[0mv" in line
    assert HUMAN_LINE.fullmatch(ANSI.sub("", line)).group(4) == "careful k=v"  # type: ignore[union-attr]


@pytest.mark.parametrize("fmt", ["auto", "human"])
def test_no_color_turns_colour_off_even_on_a_terminal(logger: logging.Logger, fmt: str) -> None:
    terminal = Terminal()
    write(logger, make_handler(fmt, terminal, no_color=True), "plain")
    line = terminal.getvalue().rstrip("\n")
    assert "\x1b" not in line and HUMAN_LINE.fullmatch(line)


def test_a_human_line_cannot_drive_the_terminal(logger: logging.Logger) -> None:
    terminal = Terminal()
    write(logger, make_handler("human", terminal, no_color=True), "path %s", "/v1/\x1b[2Jx\x07",
          extra={"fields": {"path": "/v1/\x1b]0;title\x07"}})
    text = terminal.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "path /v1/\\x1b[2Jx\\x07" in text and 'path="/v1/\\u001b]0;title\\u0007"' in text


def test_a_human_traceback_follows_on_the_next_lines(logger: logging.Logger) -> None:
    buffer = io.StringIO()
    logger.addHandler(make_handler("human", buffer))
    try:
        raise RuntimeError(f"bad {TOKEN}")
    except RuntimeError:
        logger.exception("failed")
    first, *rest = buffer.getvalue().splitlines()
    assert first.endswith(" failed") and rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "RuntimeError: bad exe_[REDACTED]"


def test_json_lines_keep_their_fields_and_add_the_record_s_own(logger: logging.Logger) -> None:
    buffer = io.StringIO()
    with bind_execution("e-2"), bind_request("r-2"):
        write(logger, make_handler("json", buffer), "GET /x 200",
              extra={"fields": {"status": 200, "duration_ms": 1.5, "principal": None, "level": "forged",
                                "auth": f"Bearer {TOKEN}"}})
    (line,) = [json.loads(text) for text in buffer.getvalue().splitlines()]
    assert line["level"] == "WARNING"  # a field never replaces what the formatter writes
    assert {k: line[k] for k in ("status", "duration_ms", "execution_id", "request_id")} == \
        {"status": 200, "duration_ms": 1.5, "execution_id": "e-2", "request_id": "r-2"}
    assert "principal" not in line and TOKEN not in json.dumps(line)
    assert list(line)[:4] == ["ts", "level", "logger", "message"]


def test_a_request_id_given_with_the_record_wins_over_the_bound_one(logger: logging.Logger) -> None:
    buffer = io.StringIO()
    with bind_request("bound"):
        write(logger, make_handler("json", buffer), "x", extra={"request_id": "given"})
        write(logger, make_handler("json", buffer), "y")
    assert [json.loads(text)["request_id"] for text in buffer.getvalue().splitlines()] == ["given", "bound"]


async def test_the_request_id_follows_tasks_and_threads_and_ends_with_its_binding(logger: logging.Logger) -> None:
    buffer = io.StringIO()
    logger.addHandler(make_handler("json", buffer))

    async def child() -> None:
        await asyncio.sleep(0)
        logger.info("in a task")

    with bind_request("req-9"):
        task = asyncio.create_task(child())
        await asyncio.to_thread(logger.info, "in a thread")
        with bind_request(None):  # a job enqueued without one
            logger.info("none")
        assert current_request() == "req-9"
    await task
    logger.info("after")
    found = {line["message"]: line.get("request_id") for line in map(json.loads, buffer.getvalue().splitlines())}
    assert found == {"in a task": "req-9", "in a thread": "req-9", "none": None, "after": None}
    assert current_request() is None
