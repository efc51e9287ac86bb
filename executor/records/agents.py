"""Agent records: an agent and the immutable version an execution runs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from executor.pricing import Pricing
from executor.settings import Limits

VERSION_STATUSES = ("published", "deprecated", "withdrawn")


@dataclass(frozen=True)
class AgentVersion:
    agent_id: uuid.UUID
    name: str
    kind: str
    version: int
    image: str
    image_digest: str | None  # None: a WASM agent whose module is not uploaded yet
    command: list[str] | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    limits: Limits
    pool: dict[str, int] | None  # {"min", "max"} pre-started containers; None: the operator's defaults
    description: str | None
    owner: str
    created_at: datetime
    module_sha256: str | None = None  # WASM agents: the uploaded module
    fuel: int | None = None  # WASM agents: the fuel each run gets
    pricing: Pricing | None = None  # None: free
    status: str = "published"  # published → deprecated → withdrawn (VERSION_STATUSES)
    status_changed_at: datetime | None = None
    runtime: str | None = None  # the OCI runtime it asked for; None: the operator's default
    # Its upstreams through the egress gateway, as stored: {"upstreams": [...], "limits": {...}}
    # (executor/egress/policy.py); None: no egress at all, no socket (docs/egress.md).
    egress: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.agent_id),
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "image": self.image,
            "image_digest": self.image_digest,
            "command": self.command,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "limits": self.limits.to_dict(),
            "pool": self.pool,
            "description": self.description,
            "pricing": self.pricing.to_dict() if self.pricing else None,
            "runtime": self.runtime,
            "egress": self.egress["upstreams"] if self.egress else None,
            "egress_limits": self.egress["limits"] if self.egress else None,
            "status": self.status,
            "status_changed_at": _iso(self.status_changed_at),
            "created_at": _iso(self.created_at),
            **({"module_sha256": self.module_sha256, "fuel": self.fuel} if self.kind == "wasm" else {}),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
