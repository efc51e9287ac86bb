"""Logs as JSON lines, each with the execution it is about, and never a secret.

    {"ts": "2025-01-02T03:04:05.678Z", "level": "INFO", "logger": "executor.executions.worker",
     "message": "...", "execution_id": "...", "instance": "...", "exc": "Traceback ..."}

`execution_id` comes from a context variable set by bind_execution(): asyncio tasks
created inside, and asyncio.to_thread() calls made inside, inherit it (both copy the
context). `instance` is set once per process with set_instance().

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
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

_execution_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("execution_id", default=None)
_instance: str | None = None

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


class ContextFilter(logging.Filter):
    """Stamps execution_id and instance on the record, at the call site (same thread, same context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "execution_id", None) is None:
            record.execution_id = _execution_id.get()
        if getattr(record, "instance", None) is None:
            record.instance = _instance
        return True


class RedactFilter(logging.Filter):
    """Formats the message once, with its args, and redacts it (and the traceback) in place."""

    _traceback = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we can
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._traceback.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"ts": _timestamp(record.created), "level": record.levelname,
                                "logger": record.name, "message": record.getMessage()}
        for key in ("execution_id", "instance"):
            value = getattr(record, key, None)
            if value is not None:
                line[key] = str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        exc = "\n".join(part for part in (record.exc_text, record.stack_info) if part)
        if exc:
            line["exc"] = exc
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The former plain format, with the execution in brackets when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        execution_id = getattr(record, "execution_id", None)
        record.context = f" [{execution_id}]" if execution_id else ""
        return super().format(record)


def make_handler(fmt: str = "json", stream: TextIO | None = None) -> logging.Handler:
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be json or text, not {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    return handler


def configure_logging(fmt: str = "json", level: int = logging.INFO, *, stream: TextIO | None = None) -> None:
    """One handler on the root logger (replacing any), on stderr; warnings are logged too."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(make_handler(fmt, stream))
    root.setLevel(level)
    logging.captureWarnings(True)
