"""Which subschemas of a schema apply to what, found once at registration.

A validator applies some keywords' subschemas to the same value it is checking (`$ref`,
`$dynamicRef`, `allOf`, `anyOf`, `oneOf`, `not`, `if`, `then`, `else`, `dependentSchemas`) and
the others to a part of it (`properties`, `items`, `prefixItems`, `contains`, ...). A cycle of
the first kind never consumes the value, so validation never ends (Python stops it with a
RecursionError): such a schema is refused, naming the reference that closes the cycle.
A cycle through a child-value keyword is ordinary recursion (a tree of nodes): it ends when
the value runs out.

The walk follows references with the same `referencing` resolver the validator uses, so a
reference means here what it means when validating; `$dynamicRef` is followed to its static
target and to every `$dynamicAnchor` of the same name (any may be in the dynamic scope).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from referencing._core import Resolver
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from executor import jsondoc

SAME_VALUE_ONE = ("not", "if", "then", "else")
SAME_VALUE_LIST = ("allOf", "anyOf", "oneOf")
SAME_VALUE_MAP = ("dependentSchemas",)
CHILD_ONE = ("items", "contains", "additionalProperties", "propertyNames", "unevaluatedItems",
             "unevaluatedProperties")
CHILD_LIST = ("prefixItems",)
CHILD_MAP = ("properties", "patternProperties", "$defs", "definitions")  # $defs: applied only by reference
REFERENCES = ("$ref", "$dynamicRef")


def escape(part: Any) -> str:
    """One RFC 6901 reference token, with its leading slash."""
    return "/" + jsondoc.escape(str(part))


@dataclass(frozen=True)
class Edge:
    target: int  # id() of the subschema applied
    pointer: str  # of the keyword that applies it: ".../$ref", ".../allOf/0"
    reference: bool


@dataclass
class Walk:
    """Every subschema the validator may apply, in document order, with where it is."""

    pointer: dict[int, str] = field(default_factory=dict)  # id(subschema) -> its JSON pointer
    order: list[int] = field(default_factory=list)
    same_value: dict[int, list[Edge]] = field(default_factory=dict)
    patterns: list[tuple[str, str]] = field(default_factory=list)  # (pointer, pattern)
    unresolvable: list[tuple[str, str]] = field(default_factory=list)  # (pointer, reference)


class SchemaCycle(Exception):
    def __init__(self, pointer: str, cycle: list[str]) -> None:
        super().__init__(pointer)
        self.pointer = pointer
        self.cycle = cycle


def _index(document: Any) -> tuple[dict[int, str], dict[str, list[dict[str, Any]]]]:
    """id() of every object in the document -> its pointer, in document order; and the objects
    carrying each `$dynamicAnchor`. Iterative: a schema may be deep."""
    pointers: dict[int, str] = {}
    dynamic: dict[str, list[dict[str, Any]]] = {}
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        node, pointer = stack.pop()
        if isinstance(node, dict):
            pointers.setdefault(id(node), pointer)
            if isinstance(node.get("$dynamicAnchor"), str):
                dynamic.setdefault(node["$dynamicAnchor"], []).append(node)
            stack.extend((value, pointer + escape(key)) for key, value in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((value, pointer + escape(index)) for index, value in reversed(list(enumerate(node))))
    return pointers, dynamic


def _applied(node: dict[str, Any], pointer: str) -> Iterator[tuple[dict[str, Any], str, bool]]:
    """The subschemas `node`'s keywords apply: (subschema, its pointer, applied to the same value)."""
    for keyword, value in node.items():
        at = pointer + escape(keyword)
        if keyword in SAME_VALUE_ONE or keyword in CHILD_ONE:
            found = [(value, at)]
        elif (keyword in SAME_VALUE_LIST or keyword in CHILD_LIST) and isinstance(value, list):
            found = [(child, at + escape(index)) for index, child in enumerate(value)]
        elif (keyword in SAME_VALUE_MAP or keyword in CHILD_MAP) and isinstance(value, dict):
            found = [(child, at + escape(name)) for name, child in value.items()]
        else:
            continue
        same_value = keyword in SAME_VALUE_ONE or keyword in SAME_VALUE_LIST or keyword in SAME_VALUE_MAP
        yield from ((child, child_at, same_value) for child, child_at in found if isinstance(child, dict))


def _patterns(node: dict[str, Any], pointer: str) -> list[tuple[str, str]]:
    found = [(pointer + "/pattern", node["pattern"])] if isinstance(node.get("pattern"), str) else []
    if isinstance(node.get("patternProperties"), dict):
        found += [(pointer + "/patternProperties" + escape(name), name) for name in node["patternProperties"]]
    return found


def walk(schema: dict[str, Any], resolver: Resolver[Any]) -> Walk:
    """The subschemas reachable from `schema` through keywords and references."""
    pointers, dynamic = _index(schema)
    result = Walk(pointer=pointers)
    pending: list[tuple[dict[str, Any], Resolver[Any]]] = [(schema, resolver)]
    seen: set[int] = set()
    while pending:
        node, here = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        result.order.append(id(node))
        pointer = result.pointer[id(node)]
        result.patterns += _patterns(node, pointer)
        edges = result.same_value.setdefault(id(node), [])
        children: list[tuple[dict[str, Any], Resolver[Any]]] = []
        for keyword in REFERENCES:
            value = node.get(keyword)
            if not isinstance(value, str):
                continue
            at = pointer + escape(keyword)
            try:
                resolved = here.lookup(value)
            except Unresolvable:
                result.unresolvable.append((at, value))
                continue
            targets = [(resolved.contents, resolved.resolver)]
            if keyword == "$dynamicRef" and value.startswith("#"):
                targets += [(anchor, here) for anchor in dynamic.get(value[1:], [])]
            for target, target_resolver in targets:
                if isinstance(target, dict) and id(target) in result.pointer:
                    edges.append(Edge(id(target), at, reference=True))
                    children.append((target, target_resolver))
        for child, child_pointer, same_value in _applied(node, pointer):
            if same_value:
                edges.append(Edge(id(child), child_pointer, reference=False))
            children.append((child, here.in_subresource(DRAFT202012.create_resource(child))))
        pending.extend(reversed(children))
    rank = {node_id: index for index, node_id in enumerate(pointers)}
    result.order.sort(key=rank.__getitem__)
    return result


def find_cycle(graph: Walk) -> SchemaCycle | None:
    """The first cycle of same-value edges (depth first, from each subschema in document order),
    reported at the reference that closes it."""
    state: dict[int, int] = {}  # 1: on the path, 2: done
    for start in graph.order:
        if start in state:
            continue
        path: list[tuple[int, Edge | None]] = [(start, None)]
        iterators = [iter(graph.same_value.get(start, []))]
        state[start] = 1
        while iterators:
            edge = next(iterators[-1], None)
            if edge is None:
                state[path[-1][0]] = 2
                path.pop()
                iterators.pop()
                continue
            if state.get(edge.target) == 1:
                return _cycle(graph, path, edge)
            if edge.target not in state:
                state[edge.target] = 1
                path.append((edge.target, edge))
                iterators.append(iter(graph.same_value.get(edge.target, [])))
    return None


def _cycle(graph: Walk, path: list[tuple[int, Edge | None]], closing: Edge) -> SchemaCycle:
    start = next(index for index, (node, _) in enumerate(path) if node == closing.target)
    edges = [edge for _, edge in path[start + 1:] if edge is not None] + [closing]
    # Name a reference: a cycle always has one, and it is what the author wrote to make it.
    named = closing if closing.reference else [edge for edge in edges if edge.reference][-1]
    return SchemaCycle(named.pointer, [graph.pointer[closing.target] or "#"] + [edge.pointer for edge in edges])
