"""Entitlements: the marketplace grants a user an agent; every execution of that user takes
one use, atomically, in the transaction that accepts it.

Who needs one: an execution owned by a user (their own token, or a service submitting
`on_behalf_of` them). A service's or an operator's own executions need none: they are the
parties that grant entitlements in the first place (docs/marketplace.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from executor.agents.service import Agents
from executor.errors import (
    EntitlementExpired,
    EntitlementMissing,
    EntitlementRevoked,
    EntitlementUsedUp,
    Forbidden,
    NotFound,
    Problem,
)
from executor.instants import parse_instant
from executor.pagination import encode_cursor, page_filters
from executor.records.agents import AgentVersion
from executor.records.entitlements import Entitlement, EntitlementState
from executor.records.principals import Principal, Role
from executor.storage import entitlements as entitlement_sql

MAX_PAGE = 100
_REFUSALS: dict[EntitlementState, type[Problem]] = {
    EntitlementState.EXPIRED: EntitlementExpired,
    EntitlementState.REVOKED: EntitlementRevoked,
    EntitlementState.USED_UP: EntitlementUsedUp,
}


class Entitlements:
    """Grants, listings and revocations of entitlements, and the use an execution takes."""

    def __init__(self, db: asyncpg.Pool, agents: Agents) -> None:
        self.db = db
        self.agents = agents
        # Told "user:<subject>" after a grant or a revocation changed what that user may run
        # (executor/mcp lists it as tools); set by executor/service.py to Events.publish_tools_changed.
        self.on_change: Callable[[str], Awaitable[None]] | None = None

    async def changed(self, user: str) -> None:
        if self.on_change is not None:
            await self.on_change(f"user:{user}")

    async def grant(self, caller: Principal, body: Any) -> tuple[Entitlement, bool]:
        """PUT /v1/entitlements: create or replace the terms of (user, agent); (it, created). The
        body's shape was checked against the contract's GrantEntitlement."""
        user, uses = body["user"], body.get("uses")
        agent = await self.agents.get(body["agent_id"])
        expires_at = parse_instant(body.get("expires_at"), "/expires_at")
        granted = await entitlement_sql.grant(self.db, user=user, agent_id=agent.agent_id, granted_by=caller.party,
                                              expires_at=expires_at, uses=uses)
        await self.changed(user)
        return granted

    async def list_page(self, caller: Principal, *, user: str | None, agent_id: str | None,
                        cursor: str | None, limit: int) -> tuple[list[Entitlement], str | None]:
        """Services and operators see every entitlement; a user sees their own."""
        if caller.role is Role.USER:
            if user not in (None, caller.subject):
                raise Forbidden("a user sees only their own entitlements")
            user = caller.subject
        agent, before = page_filters(agent_id, cursor)
        limit = max(1, min(limit, MAX_PAGE))
        found = await entitlement_sql.list_page(self.db, user=user, agent_id=agent, before=before, limit=limit)
        return found, encode_cursor(found[-1].created_at, found[-1].id) if len(found) == limit else None

    async def revoke(self, caller: Principal, entitlement_id: str) -> Entitlement:
        try:
            parsed = uuid.UUID(entitlement_id)
        except ValueError:
            raise NotFound(f"no entitlement {entitlement_id!r}") from None
        revoked = await entitlement_sql.revoke(self.db, parsed, caller.party)
        if revoked is None:
            raise NotFound(f"no entitlement {entitlement_id!r}")
        await self.changed(revoked.user)
        return revoked

    async def runnable_agents(self, user: str) -> list[AgentVersion]:
        """What the user may run now: the runnable version of each agent they hold a live entitlement to."""
        agent_ids = await entitlement_sql.live_agent_ids(self.db, user=user)
        return await self.agents.runnable(agent_ids=agent_ids) if agent_ids else []

    async def take_use(self, conn: asyncpg.Connection, *, user: str, agent_id: uuid.UUID) -> tuple[uuid.UUID, str]:
        """Take one use of the user's live entitlement, inside the accepting transaction: (its id,
        who granted it), or the 403 that says why there is none: missing, expired, revoked, used up."""
        taken = await entitlement_sql.take_use(conn, user=user, agent_id=agent_id)
        if taken is not None:
            return taken
        latest = await entitlement_sql.latest_of(conn, user=user, agent_id=agent_id)
        if latest is None:
            raise EntitlementMissing(f"user {user!r} holds no entitlement to agent {agent_id}")
        state = latest.state(datetime.now(UTC))
        refusal = _REFUSALS.get(state, EntitlementUsedUp)  # LIVE here: its last use went to a racing request
        raise refusal(f"entitlement {latest.id} of user {user!r} to agent {agent_id}: {refusal.title.lower()}")
