"""Tool names from agent names.

Agent names match `^[a-z0-9][a-z0-9._-]{0,99}$`, a subset of what MCP allows in a tool name
(`[A-Za-z0-9_.-]`, 1 to 128 characters), and they are unique in a deployment: so a tool is
named exactly as its agent, which keeps the name stable across versions and processes. Should
a stored name ever fall outside that alphabet, each character outside it becomes `_`, and two
agents that then meet on one name both get `-` and the first 8 hex digits of their id
appended (the whole id when those are not enough): deterministic whoever asks.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterable

MAX_TOOL_NAME = 128
_OUTSIDE = re.compile(r"[^A-Za-z0-9_.-]")


def base_name(agent_name: str) -> str:
    """The agent's name in MCP's alphabet (itself for every name the API accepts)."""
    return (_OUTSIDE.sub("_", agent_name) or "_")[:MAX_TOOL_NAME]


def tool_names(agents: Iterable[tuple[uuid.UUID, str]]) -> dict[uuid.UUID, str]:
    """agent id → its tool name, for (id, agent name) pairs: unique over the given agents."""
    by_base: dict[str, list[uuid.UUID]] = defaultdict(list)
    for agent_id, name in agents:
        by_base[base_name(name)].append(agent_id)
    names: dict[uuid.UUID, str] = {}
    for base, ids in by_base.items():
        if len(ids) == 1:
            names[ids[0]] = base
            continue
        for digits in (8, 32):  # the whole id when 8 hex digits do not tell them apart
            suffixed = {agent_id: _suffixed(base, agent_id.hex[:digits]) for agent_id in sorted(ids)}
            if len(set(suffixed.values())) == len(ids):
                break
        names.update(suffixed)
    return names


def _suffixed(base: str, digits: str) -> str:
    suffix = "-" + digits
    return base[: MAX_TOOL_NAME - len(suffix)] + suffix
