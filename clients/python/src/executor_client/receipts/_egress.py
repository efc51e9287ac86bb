"""How a receipt binds a task's egress (a port of executor/receipts/egress.py): a digest of the
recorded list of its requests.

The gateway records each request of a task as a JSON object (seq, method, upstream, path,
status, bytes_out, bytes_in, duration_ms, outcome, reason; GET /v1/executions/{id}/egress).
The receipt does not carry that list: it carries `egress_digest` of it, the SHA-256 of its
RFC 8785 form plus the totals, so anyone holding the list can check it is the one signed, and
anyone holding only the receipt still sees how much the task sent and received.

The entries are hashed as given, whatever their keys: a verifier needs no schema to check
them, only the canonical form. Only `bytes_out` and `bytes_in` are read (integers, summed).
"""

from __future__ import annotations

import hashlib
from typing import Any

from executor_client.receipts._canonical import CanonicalizationError, canonical_json

EGRESS_FIELDS = ("sha256", "requests", "bytes_out", "bytes_in")
_TOTALS = ("bytes_out", "bytes_in")


def egress_digest(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """`{sha256, requests, bytes_out, bytes_in}` of a task's recorded egress, in its order.
    Raises CanonicalizationError when the list has no RFC 8785 form (a float, say)."""
    return {
        "sha256": hashlib.sha256(canonical_json(entries)).hexdigest(),
        "requests": len(entries),
        "bytes_out": sum(entry["bytes_out"] for entry in entries),
        "bytes_in": sum(entry["bytes_in"] for entry in entries),
    }


def egress_problems(digest: Any, entries: Any) -> list[str]:
    """Why `entries` is not the list `digest` (a receipt's `egress`) was made from; empty when it is."""
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        return ["the egress given is not a JSON array of objects"]
    if not isinstance(digest, dict) or set(digest) != set(EGRESS_FIELDS):
        return [f"the receipt's egress is not an object of {', '.join(EGRESS_FIELDS)}"]
    bad = [f"entry {position} has no integer {name}" for position, entry in enumerate(entries) for name in _TOTALS
           if not _is_int(entry.get(name))]
    if bad:
        return bad
    try:
        found = egress_digest(entries)
    except CanonicalizationError as exc:
        return [f"the egress given cannot be RFC 8785 JSON: {exc}"]
    problems = []
    if found["sha256"] != digest["sha256"]:
        problems.append(f"the egress given ({found['requests']} requests, sha256 {found['sha256']}) is not the list "
                        f"the receipt records ({digest['requests']} requests, sha256 {digest['sha256']})")
    wrong = [f"{name} {found[name]} (the receipt says {digest[name]})" for name in EGRESS_FIELDS[1:]
             if found[name] != digest[name]]
    if wrong:
        problems.append("the egress given totals " + ", ".join(wrong))
    return problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
