"""Logs: JSON lines for machines, human lines for a terminal; each with the execution and the
request it is about, and never a secret.

    {"ts": "2025-01-02T03:04:05.678Z", "level": "INFO", "logger": "executor.executions.worker",
     "message": "...", "execution_id": "...", "request_id": "...", "instance": "...", "exc": "Traceback ..."}

    03:04:05.678 INFO  executor.executions.worker ... execution_id=... request_id=...

`EXECUTOR_LOG_FORMAT`: `json`, `human`, or `auto` (human when the stream is a terminal, else
JSON); `text` is the former name of `human`. Human lines are coloured only on a terminal, and
never when `NO_COLOR` is set (the caller says so: `no_color`). docs/logs.md has the fields.

`execution_id` and `request_id` come from context variables set by bind_execution() and
bind_request(): asyncio tasks created inside, and asyncio.to_thread() calls made inside,
inherit them (both copy the context). `instance` is set once per process with set_instance().
A record may carry fields of its own (`extra={"fields": {...}}`, the access log's): they are
keys of the JSON line, `key=value` pairs of the human one.

Every record goes through a redaction filter on the handler (so third-party loggers
too): bearer tokens (`exe_…`), webhook secrets (`whsec_…`) and `Authorization` values
are replaced before anything is written.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

_execution_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("execution_id", default=None)
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_instance: str | None = None

FORMATS = ("auto", "human", "json", "text")  # text: the former name of human
# Keys of a JSON line the context or the formatter writes; a record's own fields never replace them.
_CONTEXT_KEYS = ("execution_id", "request_id", "instance")
_RESERVED = frozenset({"ts", "level", "logger", "message", "exc", *_CONTEXT_KEYS})

REDACTED = "[REDACTED]"
_SECRETS = (
    # The header itself, as text or in a dict's repr: its whole value, whatever the scheme.
    (re.compile(r"""(?i)(authorization['"]?\s*[:=]\s*['"]?)(?:(?:bearer|basic|token)\s+)?[^\s'",;}]+"""),
     r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    (re.compile(r"exe_[A-Za-z0-9_-]+"), "exe_" + REDACTED),  # executor/tokens.py TOKEN_PREFIX
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), "whsec_" + REDACTED),  # executor/webhooks/signing.py
)


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def set_instance(instance_id: str | None) -> None:
    """This process's instance id, carried by every record from now on."""
    global _instance
    _instance = instance_id


@contextlib.contextmanager
def bind_execution(execution_id: uuid.UUID | str) -> Iterator[None]:
    """Every record logged inside (and in tasks and to_thread calls started inside) carries it."""
    token = _execution_id.set(str(execution_id))
    try:
        yield
    finally:
        _execution_id.reset(token)


def current_execution() -> str | None:
    return _execution_id.get()


@contextlib.contextmanager
def bind_request(request_id: str | None) -> Iterator[None]:
    """Every record logged inside carries this request id (None: none, e.g. a job enqueued
    without one); like bind_execution, it follows tasks and to_thread calls started inside."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def current_request() -> str | None:
    """The id of the request being handled here (bound by the API's middleware, or by the
    worker from its job), if any."""
    return _request_id.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """Stamps execution_id, request_id and instance on the record, at the call site (same thread,
    same context). A value the record already has (`extra=`) is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "execution_id", None) is None:
            record.execution_id = _execution_id.get()
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get()
        if getattr(record, "instance", None) is None:
            record.instance = _instance
        return True


class RedactFilter(logging.Filter):
    """Formats the message once, with its args, and redacts it (its fields, and the traceback)
    in place."""

    _traceback = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we can
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = redact(message), None
        fields = _fields(record)
        if fields:
            record.fields = {key: redact(value) if isinstance(value, str) else value for key, value in fields.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self._traceback.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _exc(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    return "\n".join(part for part in (record.exc_text, record.stack_info) if part)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"ts": _timestamp(record.created), "level": record.levelname,
                                "logger": record.name, "message": record.getMessage()}
        for key, value in _fields(record).items():
            if key not in _RESERVED and value is not None:
                line[key] = value
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = str(value)
        exc = _exc(self, record)
        if exc:
            line["exc"] = exc
        return json.dumps(line, ensure_ascii=False, default=str)


# Control characters, but newline and tab: a log line must not drive the terminal it is shown on.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# A value written bare in `key=value`: anything else is written as a JSON string.
_BARE = re.compile(r"[^\s\"'=\\\x00-\x1f\x7f-\x9f]+")
_RESET, _DIM = "\x1b[0m", "\x1b[2m"
_LEVEL_COLOURS = {"DEBUG": "\x1b[2m", "INFO": "\x1b[32m", "WARNING": "\x1b[33m", "ERROR": "\x1b[31m",
                  "CRITICAL": "\x1b[1;31m"}


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    """`HH:MM:SS.mmm LEVEL logger message key=value …`, local time; the record's fields, then the
    execution and the request, as the pairs; a traceback on the lines below. `colour`: the level
    in its colour, the logger and the keys dimmed (ANSI)."""

    def __init__(self, *, colour: bool = False) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        level, name = f"{record.levelname:<5}", record.name
        pairs = [(key, value) for key, value in _fields(record).items() if value is not None]
        pairs += [(key, value) for key in ("execution_id", "request_id")
                  if (value := getattr(record, key, None)) is not None]
        if self.colour:
            level = _LEVEL_COLOURS.get(record.levelname, "") + level + _RESET
            name = _DIM + name + _RESET
            rendered = [f"{_DIM}{key}={_RESET}{_logfmt_value(value)}" for key, value in pairs]
        else:
            rendered = [f"{key}={_logfmt_value(value)}" for key, value in pairs]
        line = " ".join([clock, level, name, _escape(record.getMessage()), *rendered])
        exc = _exc(self, record)
        return line + "\n" + _escape(exc) if exc else line


def resolve_format(fmt: str, stream: TextIO) -> str:
    """"human" or "json": `auto` is human when `stream` is a terminal; `text` is human."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "auto":
        return "human" if _is_terminal(stream) else "json"
    return "human" if fmt == "text" else fmt


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def make_handler(fmt: str = "json", stream: TextIO | None = None, *, no_color: bool = False) -> logging.Handler:
    """A handler on `stream` (stderr) in format `fmt` (see resolve_format). Human lines are
    coloured when the stream is a terminal and `no_color` is false (the caller reads NO_COLOR)."""
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    if resolve_format(fmt, stream) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(HumanFormatter(colour=_is_terminal(stream) and not no_color))
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    return handler


def configure_logging(fmt: str = "auto", level: int = logging.INFO, *, stream: TextIO | None = None,
                      no_color: bool = False) -> None:
    """One handler on the root logger (replacing any), on stderr; warnings are logged too."""
    handler = make_handler(fmt, stream, no_color=no_color)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
