"""Where a request's milliseconds go: named marks on one timeline, opt-in (EXECUTOR_SERVER_TIMING).

A *mark* is a wall-clock instant (time.time(), comparable between the processes of one host)
at which a phase of the work ended. The API starts a timeline per request; the worker one per
job, sent with the execution's "finished" event, and merged into the waiting request's. The
answer carries the phases as a W3C `Server-Timing` header, each the time from the mark before
it (docs/benchmarks.md reads them). With timing off nothing is recorded and nothing is sent.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import time
from collections.abc import Iterable, Iterator

Marks = list[tuple[str, float]]

_current: contextvars.ContextVar[Marks | None] = contextvars.ContextVar("executor_timeline", default=None)


@contextlib.contextmanager
def timeline(first: str, at: float | None = None) -> Iterator[Marks]:
    """A timeline for the work of this task (and of the tasks it starts), beginning now (or `at`)."""
    marks: Marks = [(first, time.time() if at is None else at)]
    token = _current.set(marks)
    try:
        yield marks
    finally:
        _current.reset(token)


def mark(name: str, at: float | None = None) -> None:
    """The phase `name` ended now (or `at`); nothing when no timeline is being kept."""
    marks = _current.get()
    if marks is not None:
        marks.append((name, time.time() if at is None else at))


def add(more: Iterable[tuple[str, float]]) -> None:
    """Marks made elsewhere (the worker's, the runtime's), put in time order with ours."""
    marks = _current.get()
    if marks is not None:
        marks.extend(more)
        marks.sort(key=lambda item: item[1])


def encode(marks: Marks) -> str:
    """`name=epoch_ms,...`: the marks as a pub/sub message can carry them."""
    return ",".join(f"{name}={at * 1000:.3f}" for name, at in marks)


def decode(text: str) -> Marks:
    """What encode() made; anything else (an older process's message) is skipped."""
    found: Marks = []
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            found.append((name, float(value) / 1000))
        except ValueError:
            continue
    return found


def server_timing(marks: Marks) -> str:
    """The phases as a Server-Timing header: each from the mark before it, and `total`."""
    ordered = sorted(marks, key=lambda item: item[1])
    phases = [f"{name};dur={max(0.0, (at - before) * 1000):.2f}"
              for (_, before), (name, at) in itertools.pairwise(ordered)]
    if len(ordered) > 1:
        phases.append(f"total;dur={(ordered[-1][1] - ordered[0][1]) * 1000:.2f}")
    return ", ".join(phases)
