"""Operators' host allow-lists (webhook targets, egress upstreams): comma-separated host names,
or `*.suffix` for any name below suffix (not suffix itself); case and a trailing dot ignored.
What an unset list means is each caller's own rule (webhooks: any host; egress: none)."""

from __future__ import annotations

from collections.abc import Iterable


def parse_hosts(raw: str | None) -> list[str]:
    """The entries of a comma-separated list, normalised; [] for None or an empty list."""
    return [entry.strip().lower().rstrip(".") for entry in (raw or "").split(",") if entry.strip()]


def host_listed(host: str, entries: Iterable[str]) -> bool:
    """`host` is an entry, or a name below an entry's `*.suffix`. A bare `*` matches nothing."""
    host = host.lower().rstrip(".")
    for entry in entries:
        if entry.startswith("*."):
            suffix = entry[1:]  # ".example.com"
            if len(suffix) > 1 and host.endswith(suffix) and len(host) > len(suffix):
                return True
        elif entry and entry != "*" and host == entry:
            return True
    return False
