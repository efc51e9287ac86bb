"""Structured logs (pure): the JSON shape, the execution id carried into tasks and threads,
and secrets that never reach the output."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import uuid
import warnings
from collections.abc import Iterator
from datetime import datetime

import pytest

from executor.observability.logs import (
    bind_execution,
    configure_logging,
    current_execution,
    make_handler,
    redact,
    set_instance,
)

TOKEN = "exe_" + "A1b2C3d4" * 5 + "-_x"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/+dc="


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own with the service's JSON handler, writing to a buffer."""
    buffer = io.StringIO()
    logger = logging.getLogger(f"test.observability.{uuid.uuid4().hex[:6]}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = make_handler("json", buffer)
    logger.addHandler(handler)
    yield logger, buffer
    logger.removeHandler(handler)
    set_instance(None)


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_a_utc_millisecond_timestamp(logged) -> None:
    logger, buffer = logged
    set_instance("host-1234")
    logger.info("hello %s, %d tasks", "world\nwide", 3)
    (line,) = lines(buffer)
    assert set(line) == {"ts", "level", "logger", "message", "instance"}
    assert line["level"] == "INFO" and line["logger"] == logger.name and line["instance"] == "host-1234"
    assert line["message"] == "hello world\nwide, 3 tasks"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"]), line["ts"]
    assert datetime.fromisoformat(line["ts"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0


def test_an_exception_goes_in_exc_on_the_same_line(logged) -> None:
    logger, buffer = logged
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    (line,) = lines(buffer)
    assert line["message"] == "it failed" and line["level"] == "ERROR"
    assert "Traceback" in line["exc"] and "ValueError: boom" in line["exc"]
    assert "execution_id" not in line and "instance" not in line


async def test_execution_id_follows_tasks_created_inside_and_to_thread(logged) -> None:
    logger, buffer = logged
    execution_id = uuid.uuid4()

    async def child() -> None:
        await asyncio.sleep(0)
        logger.info("in a task")

    with bind_execution(execution_id):
        logger.info("bound")
        task = asyncio.create_task(child())
        await asyncio.to_thread(logger.info, "in a thread")
        with bind_execution("other"):
            logger.info("nested")
        assert current_execution() == str(execution_id)
    await task
    logger.info("after")
    by_message = {line["message"]: line.get("execution_id") for line in lines(buffer)}
    assert by_message == {"bound": str(execution_id), "in a task": str(execution_id),
                          "in a thread": str(execution_id), "nested": "other", "after": None}
    assert current_execution() is None


async def test_concurrent_executions_do_not_mix(logged) -> None:
    logger, buffer = logged

    async def run(name: str) -> None:
        with bind_execution(name):
            for step in range(3):
                await asyncio.sleep(0)
                logger.info("%s step %d", name, step)

    await asyncio.gather(*(run(f"e{i}") for i in range(5)))
    for line in lines(buffer):
        assert line["message"].startswith(line["execution_id"] + " ")


@pytest.mark.parametrize("message, args", [
    ("token %s", (TOKEN,)),
    ("headers %r", ({"Authorization": f"Bearer {TOKEN}", "Accept": "*/*"},)),
    ("Authorization: Bearer %s", ("opaque.jwt-like.value",)),
    ("authorization=%s", ("Basic dXNlcjpwYXNz",)),
    ("secret %s rotated", (SECRET,)),
    (f"in the message itself: {TOKEN} and {SECRET}", ()),
])
def test_secrets_are_redacted_from_message_and_args(logged, message, args) -> None:
    logger, buffer = logged
    logger.warning(message, *args)
    text = buffer.getvalue()
    assert "[REDACTED]" in text
    for secret in (TOKEN, TOKEN[4:], SECRET, SECRET[6:], "opaque.jwt-like.value", "dXNlcjpwYXNz"):
        assert secret not in text


def test_secrets_are_redacted_from_tracebacks(logged) -> None:
    logger, buffer = logged
    try:
        raise RuntimeError(f"could not verify {SECRET} for {TOKEN}")
    except RuntimeError:
        logger.exception("webhook failed")
    (line,) = lines(buffer)
    assert "RuntimeError" in line["exc"] and SECRET not in line["exc"] and TOKEN not in line["exc"]


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "executor test-main-1 (all) listening on http://127.0.0.1:8080; agent exec_id=12"
    assert redact(text) == text
    assert redact(str({"Authorization": f"Bearer {TOKEN}", "Accept": "*/*"})) == \
        "{'Authorization': '[REDACTED]', 'Accept': '*/*'}"


def test_text_is_the_former_name_of_the_human_format(logged) -> None:
    buffer = io.StringIO()
    logger = logging.getLogger("test.observability.text")
    logger.propagate = False
    handler = make_handler("text", buffer)
    logger.addHandler(handler)
    try:
        with bind_execution("abc"):
            logger.error("with %s", TOKEN)
        logger.error("without")
    finally:
        logger.removeHandler(handler)
    first, second = buffer.getvalue().splitlines()
    assert first.endswith(" ERROR test.observability.text with exe_[REDACTED] execution_id=abc")
    assert second.endswith(" ERROR test.observability.text without")
    with pytest.raises(ValueError):
        make_handler("xml")


def test_configure_logging_replaces_the_root_handlers_and_captures_warnings() -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    buffer = io.StringIO()
    try:
        configure_logging("json", logging.INFO, stream=buffer)
        assert len(root.handlers) == 1
        logging.getLogger("aiohttp.access").info('127.0.0.1 "GET /metrics HTTP/1.1" 200')
        logging.getLogger("x").debug("below the level")
        warnings.warn("careful", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
    written = lines(buffer)
    assert [line["logger"] for line in written] == ["aiohttp.access", "py.warnings"]
    assert "careful" in written[1]["message"]


def test_the_log_format_setting_is_auto_human_or_json() -> None:
    from executor.errors import ConfigurationError
    from executor.settings import load_settings

    assert load_settings({}).log_format == "auto"
    for fmt in ("auto", "human", "json", "text"):
        assert load_settings({"EXECUTOR_LOG_FORMAT": fmt}).log_format == fmt
    with pytest.raises(ConfigurationError, match="EXECUTOR_LOG_FORMAT"):
        load_settings({"EXECUTOR_LOG_FORMAT": "xml"})
