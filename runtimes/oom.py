"""Whether the kernel killed anything of a task at its memory limit, from a source that cannot race.

The engine's `State.OOMKilled` is not one: its shim watches the container's own cgroup and
drops the OOM event when that cgroup is already gone, which under load happens (measured on
Engine 20.10, cgroup v1: 2 of 50 and 23 of 200 concurrent bombs never flagged, not even
seconds later, so waiting for the engine's `oom` event would wait for ever). Instead:

- cgroup v2: the meter's per-container parent (runtimes/metering.py) outlives the container,
  and its `memory.events` counts its descendants' `oom_kill`s: read after the exit.
- cgroup v1: counters are per cgroup, not hierarchical, and the engine deletes the container's
  own cgroup at its exit. So the service creates the parent before the container, enforces the
  task's limit there (`memory.limit_in_bytes` = `memory.memsw.limit_in_bytes`: no swap), and
  registers an eventfd on its `memory.oom_control` (`cgroup.event_control`). The kernel signals
  it in the failing charge, before it kills anything; it is read after the exit, and closed
  before the parent's removal. The engine's own limit sits `ENGINE_HEADROOM` above the task's,
  a backstop: a charge fails at the first counter over its limit, leaf first, so the leaf must
  not be reachable before the parent by any single charge (at most a 2 MiB huge page).

Cgroup files are pseudo-files: fine to touch on the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

ENGINE_HEADROOM = 4 * 2**20


def parse_oom_kills(memory_events: str) -> int | None:
    """`oom_kill` of a cgroup v2 memory.events."""
    found = re.search(r"^oom_kill (\d+)$", memory_events, re.MULTILINE)
    return int(found[1]) if found else None


class OomWatch:
    """OOM kills under a meter's per-container parents (`memory` is the memory hierarchy)."""

    def __init__(self, memory: Path | None, *, v2: bool) -> None:
        self.memory = memory
        self.v2 = v2
        self._eventfds: dict[str, int] = {}  # v1: parent -> eventfd on its memory.oom_control
        self._counted: dict[str, int] = {}  # v1: signals read so far (a read resets an eventfd)

    def arm(self, parent: str, memory_bytes: int) -> int:
        """Before the container's creation. Returns how far above `memory_bytes` the engine's own
        limit must be set: ENGINE_HEADROOM when the parent enforces the limit (v1), else 0."""
        if self.v2 or self.memory is None:
            return 0  # v2 counts hierarchically: nothing to set up
        path = self.memory / parent.lstrip("/")
        efd = None
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / "memory.limit_in_bytes").write_text(str(memory_bytes))
            if (path / "memory.memsw.limit_in_bytes").exists():  # absent without swap accounting
                (path / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            control = os.open(path / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            try:  # the kernel keeps what it needs of the control file: it can be closed at once
                (path / "cgroup.event_control").write_text(f"{efd} {control}")
            finally:
                os.close(control)
        except OSError as exc:
            if efd is not None:
                os.close(efd)
            # The engine's limit stays the limit; its OOMKilled flag the only (racy) source.
            log.warning("oom: could not watch %s (%s): the engine's OOMKilled flag decides", path, exc)
            with contextlib.suppress(OSError):
                (path / "memory.limit_in_bytes").write_text("-1")
            return 0
        self._eventfds[parent] = efd
        self._counted[parent] = 0
        return ENGINE_HEADROOM

    def kills(self, parent: str) -> int | None:
        """OOM kills (v1: OOM signals) under the parent since it was armed; None: unknown here."""
        if self.v2:
            return parse_oom_kills(_read(self.memory / parent.lstrip("/") / "memory.events")) if self.memory else None
        efd = self._eventfds.get(parent)
        if efd is None:
            return None
        with contextlib.suppress(BlockingIOError):  # nothing signalled since the last read
            self._counted[parent] += os.eventfd_read(efd)
        return self._counted[parent]

    def disarm(self, parent: str) -> None:
        """Before the parent's removal (its removal signals the eventfd too)."""
        self._counted.pop(parent, None)
        efd = self._eventfds.pop(parent, None)
        if efd is not None:
            with contextlib.suppress(OSError):
                os.close(efd)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
