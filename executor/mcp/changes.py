"""notifications/tools/list_changed: each open session remembers the tools it was last listed;
when they may have changed it computes them again and tells its host if they did.

What wakes a session: a message on Redis (`executor:tools-changed`, executor/queue/events.py)
that the agents and entitlements services publish after a change (a version registered,
published, deprecated or withdrawn: "*"; a user's entitlement granted, revoked, or a use of it
taken: "user:<subject>"), so every API process hears it; and, as a safety net for a message
lost to a Redis blip and for entitlements that simply expire, a re-check every RECHECK_S.
Only the sessions of the party named (all of them for "*") compute their list again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from executor.records.principals import Principal

log = logging.getLogger(__name__)

RECHECK_S = 30.0

Listed = frozenset[tuple[str, str, int]]


@dataclass
class Watched:
    principal: Principal
    listed: Listed
    notify: Callable[[], Awaitable[None]]  # sends notifications/tools/list_changed on the session's stream
    dirty: bool = False


@dataclass
class Sessions:
    """The open MCP sessions of this process: whose they are, and what they were last listed."""

    list_tools: Callable[[Principal], Awaitable[Listed]]
    recheck_s: float = RECHECK_S
    _watched: dict[str, Watched] = field(default_factory=dict)
    _owners: dict[str, str] = field(default_factory=dict)  # session id → principal's party
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def bind(self, session_id: str, principal: Principal) -> bool:
        """Record the session's principal on its first request; False when another one uses it."""
        owner = self._owners.setdefault(session_id, principal.party)
        return owner == principal.party

    def watch(self, session_id: str, principal: Principal, listed: Listed,
              notify: Callable[[], Awaitable[None]]) -> None:
        """The session was just listed `listed`: from now on it is told when that changes."""
        self._watched[session_id] = Watched(principal, listed, notify)

    def watching(self, session_id: str) -> bool:
        return session_id in self._watched

    def forget(self, session_id: str) -> None:
        self._watched.pop(session_id, None)
        self._owners.pop(session_id, None)

    def changed(self, party: str) -> None:
        """A TOOLS_CHANGED message (Events' listener calls this; it must not block)."""
        for watched in self._watched.values():
            if party == "*" or watched.principal.party == party:
                watched.dirty = True
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mcp-tools-changes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.recheck_s)
            except TimeoutError:
                self.changed("*")
            self._wake.clear()
            for session_id, watched in list(self._watched.items()):
                if watched.dirty:
                    watched.dirty = False
                    await self._check(session_id, watched)

    async def _check(self, session_id: str, watched: Watched) -> None:
        try:
            now = await self.list_tools(watched.principal)
            if now != watched.listed:
                watched.listed = now
                await watched.notify()
        except Exception:  # a database blip: the next change or re-check tries again
            log.exception("could not re-check the tools of MCP session %s", session_id[:16])
            watched.dirty = True
