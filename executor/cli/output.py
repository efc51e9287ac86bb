"""What the command line prints: aligned tables and `key: value` records for people, one JSON
document for machines (`--json`), and progress for long work on stderr.

Results go to stdout, everything else (progress, errors) to stderr. Colour only on a terminal
and never when NO_COLOR is set to anything (https://no-color.org)."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TextIO

_STATUS_COLOURS = {"COMPLETED": "32", "delivered": "32", "live": "32", "published": "32",
                   "FAILED": "31", "TIMEOUT": "31", "failed": "31", "revoked": "31", "withdrawn": "31",
                   "CANCELLED": "33", "deprecated": "33", "expired": "33", "used_up": "33",
                   "RUNNING": "36", "PENDING": "36", "pending": "36"}


def colour_allowed(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


def _paint(text: str, code: str, stream: TextIO) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if colour_allowed(stream) else text


def print_json(document: Any) -> None:
    """One JSON document on stdout (a list is one array, never one object a line)."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, status_column: str | None = None,
                empty: str = "(none)") -> None:
    """Columns aligned on the widest cell; `status_column` is coloured by its value."""
    cells = [[_cell(value) for value in row] for row in rows]
    if not cells:
        print(empty)
        return
    widths = [max(len(header), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]
    colour_at = headers.index(status_column) if status_column in headers else None
    out = sys.stdout
    print(_paint("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(), "1", out))
    for row in cells:
        parts = []
        for i, (value, width) in enumerate(zip(row, widths, strict=True)):
            padded = value.ljust(width)
            code = _STATUS_COLOURS.get(value) if i == colour_at else None
            parts.append(_paint(padded, code, out) if code else padded)
        print("  ".join(parts).rstrip())


def print_fields(pairs: Iterable[tuple[str, Any]]) -> None:
    """A record as `key: value` lines, the keys aligned; nested values as compact JSON."""
    listed = [(key, _cell(value)) for key, value in pairs]
    width = max((len(key) for key, _ in listed), default=0)
    for key, value in listed:
        print(f"{key + ':':<{width + 1}} {value}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def short(identifier: str | None) -> str:
    """The first 8 characters of an id (tables); commands take the whole id."""
    return identifier[:8] if identifier else "-"


def when(instant: str | None) -> str:
    """An RFC 3339 instant as `2025-01-02 03:04:05` (UTC)."""
    if not instant:
        return "-"
    return instant.replace("T", " ")[:19]


class Progress:
    """Long work on stderr. On a terminal: one line redrawn in place, with a spinner, the
    elapsed seconds and the current step. Otherwise: each step once, through `plain` (a line
    on stderr by default), so that logs and CI output stay one line per step.

    While it spins, log records on the root logger's handlers first clear its line, so that a
    log line never lands in the middle of it."""

    def __init__(self, title: str, *, stream: TextIO | None = None, interactive: bool | None = None,
                 plain: Callable[[str], None] | None = None) -> None:
        self.title = title
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._plain = plain or (lambda line: print(line, file=self.stream, flush=True))
        self._step = ""
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._hold_until = 0.0
        self._thread: threading.Thread | None = None
        utf8 = (getattr(self.stream, "encoding", None) or "").lower().replace("-", "") == "utf8"
        self._frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" if utf8 else "|/-\\"

    def step(self, text: str) -> None:
        """The current step (thread-safe): redrawn on a terminal, else one line."""
        if not self.interactive:
            self._plain(text)
            return
        with self._lock:
            self._step = text

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self.interactive:
            for handler in logging.getLogger().handlers:
                handler.addFilter(self._before_log)
            self._thread = threading.Thread(target=self._spin, name="executor-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            for handler in logging.getLogger().handlers:
                handler.removeFilter(self._before_log)
            with self._lock:
                self.stream.write("\r\x1b[K")
                self.stream.flush()

    def _before_log(self, record: logging.LogRecord) -> bool:
        with self._lock:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._hold_until = time.monotonic() + 0.3  # the record is written just after this returns
        return True

    def _spin(self) -> None:
        frame = 0
        while not self._stop.wait(0.1):
            with self._lock:
                if time.monotonic() < self._hold_until:
                    continue
                line = f"{self._frames[frame % len(self._frames)]} {self.title} {self.elapsed():.0f}s"
                if self._step:
                    line += f"  {self._step}"
                width = _columns(self.stream)
                self.stream.write("\r\x1b[K" + (line[: width - 1] if width else line))
                self.stream.flush()
            frame += 1


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0
