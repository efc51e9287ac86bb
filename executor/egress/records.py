"""What a task sent through the gateway: one entry per request, and the digest a receipt binds (pure).

An entry holds the method, the declared upstream name, the path, the status, the bytes each
way, the duration and what became of the request; never a header, a body or a query string.
The digest is the SHA-256 of the RFC 8785 canonical JSON of the list of entries, in order, plus
the totals: anyone holding the list can recompute it, and an edited list no longer matches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from executor.receipts.egress import egress_digest

MAX_PATH = 1024
MAX_METHOD = 32

FORWARDED, REFUSED, FAILED = "forwarded", "refused", "failed"
OUTCOMES = (FORWARDED, REFUSED, FAILED)


@dataclass(frozen=True)
class EgressEntry:
    """One request of a task. `reason` is None when forwarded, else a short code
    (docs/egress.md lists them: undeclared_upstream, method_not_allowed, limit_requests, …)."""

    seq: int  # 1, 2, … in the order requests arrived
    method: str
    upstream: str | None  # the declared name; None when the request named none
    path: str  # as sent, without the query; at most 1024 characters
    status: int  # what the task got (the upstream's status when forwarded)
    bytes_out: int  # request body bytes read from the task
    bytes_in: int  # response body bytes passed back to the task
    duration_ms: int
    outcome: str
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "method": self.method, "upstream": self.upstream, "path": self.path,
            "status": self.status, "bytes_out": self.bytes_out, "bytes_in": self.bytes_in,
            "duration_ms": self.duration_ms, "outcome": self.outcome, "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> EgressEntry:
        return cls(**{name: stored[name] for name in (
            "seq", "method", "upstream", "path", "status", "bytes_out", "bytes_in", "duration_ms", "outcome",
            "reason")})


def clean_text(text: str, limit: int) -> str:
    """`text` as printable ASCII (anything else percent-encoded as its UTF-8 bytes), cut to `limit`
    characters: a record must have a canonical JSON form whatever a task sent."""
    raw = text.encode("utf-8", "surrogateescape")
    out = "".join(chr(byte) if 0x21 <= byte <= 0x7E else f"%{byte:02X}" for byte in raw)
    return out[:limit]


def digest(entries: Iterable[EgressEntry]) -> dict[str, Any]:
    """{"sha256", "requests", "bytes_out", "bytes_in"} of the list, as a receipt binds it
    (executor/receipts/egress.py: one definition for the service and every verifier)."""
    return egress_digest([entry.to_dict() for entry in entries])
