"""Tool names from agent names (no service needed)."""

from __future__ import annotations

import uuid

from executor.mcp.naming import MAX_TOOL_NAME, base_name, tool_names
from executor.mcp.tools import is_object_schema


def test_an_agent_name_is_its_tool_name() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    names = tool_names(zip(ids, ["wordcount", "a.b_c-d", "x" * 100], strict=True))
    assert names == {ids[0]: "wordcount", ids[1]: "a.b_c-d", ids[2]: "x" * 100}


def test_outside_characters_and_collisions_are_mapped_deterministically() -> None:
    assert base_name("Üm laut/x") == "_m_laut_x" and base_name("") == "_"
    first, second = uuid.UUID(int=1), uuid.UUID(int=2)
    names = tool_names([(second, "a b"), (first, "a/b")])
    assert names == {first: "a_b-" + first.hex, second: "a_b-" + second.hex}  # 8 digits would collide here
    distinct = uuid.UUID("11111111-0000-4000-8000-000000000000")
    assert tool_names([(first, "a b"), (distinct, "a/b")])[distinct] == "a_b-11111111"
    assert names == tool_names([(first, "a/b"), (second, "a b")])
    long = tool_names([(first, "y" * 200), (second, "y" * 300)])
    assert all(len(name) == MAX_TOOL_NAME for name in long.values()) and len(set(long.values())) == 2
    assert long[first].endswith(first.hex)


def test_only_object_schemas_are_tool_schemas() -> None:
    assert is_object_schema({"type": "object"})
    assert not any(is_object_schema(s) for s in (True, {}, {"type": "string"}, {"type": ["object", "null"]}))
