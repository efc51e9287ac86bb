"""Fault injection for the crash tests: at a named point the process dies at once
(os._exit, no cleanup, no flush), as a SIGKILL would kill it there; at a refusal point the
step raises, as a database refusing it would.

EXECUTOR_FAULT_POINTS lists the armed points (comma-separated); it is for tests and
drills only and is off unless set. The points:

    before_claim   a job was read from the stream, its execution not yet claimed
    after_output   the task ran and its output was read, nothing written yet
    before_commit  inside the finishing transaction, after the receipt, before the commit

    finish_refused (raises) the worker writes a task's own outcome: refused every time
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

POINTS = frozenset({"before_claim", "after_output", "before_commit", "finish_refused"})
_armed: frozenset[str] = frozenset()


def parse(points: str | None) -> frozenset[str]:
    """The points named (ValueError for an unknown one)."""
    wanted = frozenset(p.strip() for p in (points or "").split(",") if p.strip())
    unknown = wanted - POINTS
    if unknown:
        raise ValueError(f"unknown fault point(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(POINTS))}")
    return wanted


def arm(points: str | None) -> frozenset[str]:
    """Arm the points named, in this process."""
    global _armed
    wanted = _armed = parse(points)
    if wanted:
        log.warning("fault injection armed: this process dies at %s", ", ".join(sorted(wanted)))
    return wanted


def point(name: str) -> None:
    if name in _armed:
        os._exit(137)


class InjectedRefusal(Exception):
    """Raised at an armed refusal point: not a connection error, so no retry can help."""


def refusal(name: str) -> None:
    if name in _armed:
        raise InjectedRefusal(f"fault injection: {name}")
