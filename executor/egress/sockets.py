"""The egress gateway as the container runtime sees it (runtimes.live.EgressSockets).

runtimes/ stands on its own: it hands a TaskSpec's `egress` through without reading it. Here
that grant is an EgressGrant (whose task, under which policy), and the entries the gateway
recorded go back as JSON objects, as they are stored and hashed into the receipt.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from executor.egress.gateway import EgressGateway, SocketLease
from executor.egress.policy import EgressPolicy


@dataclass(frozen=True)
class EgressGrant:
    """What a task may reach: its agent's (for the secrets) policy."""

    agent_id: uuid.UUID
    policy: EgressPolicy


class GatewaySockets:
    """runtimes.live.EgressSockets over one EgressGateway."""

    def __init__(self, gateway: EgressGateway) -> None:
        self.gateway = gateway

    async def open_socket(self) -> SocketLease:
        return await self.gateway.open_socket()

    def bind(self, lease: Any, execution_id: str, grant: Any, on_limit: Callable[[str], None]) -> None:
        assert isinstance(grant, EgressGrant)
        self.gateway.bind(lease, execution_id, grant.agent_id, grant.policy, on_limit)

    async def release(self, lease: Any) -> list[Any]:
        return [entry.to_dict() for entry in await self.gateway.release(lease)]
