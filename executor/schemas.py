"""JSON Schema (Draft 2020-12) checks for agents' input and output schemas.

A tenant's schema must never make the service fetch a URL: jsonschema retrieves remote
`$ref`s by default, so every validator here gets a registry holding only the schema itself,
and registration refuses a `$ref` that this registry cannot resolve.

Nor may it stall the service (docs/security.md, issue 15 family 5):
- registration refuses a pattern RE2 cannot run (executor.schema_regex) and a cycle of
  references that never consumes the value (executor.schema_refs), each with its pointer;
- validation runs patterns on RE2, under a time budget (executor.schema_keywords), and a
  document it cannot check in budget, or too deep to check, is a violation, never an error;
- `violations_off_loop` runs it on a thread of its own so the event loop keeps answering.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from executor import jsondoc, schema_refs, schema_regex
from executor.errors import SchemaInvalid
from executor.schema_keywords import OutOfTime, Validator, deadline

DEFAULT_BUDGET_MS = 2000.0  # EXECUTOR_SCHEMA_BUDGET_MS sets the service's
REGISTRATION_BUDGET_MS = 10_000.0  # a 1 MB schema takes ~4 s against the metaschema here
_MAX_VIOLATIONS = 100
_MAX_DETAIL = 500  # characters: a message may quote the whole instance
_THREADS = 2  # validation holds the GIL: more threads would add contention, not throughput
_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# The metaschema's "regex" format is Python's re; patterns are checked on RE2 below instead.
_META_FORMATS = FormatChecker([name for name in Draft202012Validator.FORMAT_CHECKER.checkers if name != "regex"])
_META = Validator(Draft202012Validator.META_SCHEMA, format_checker=_META_FORMATS)

T = TypeVar("T")


def _registry(schema: dict[str, Any]) -> tuple[Registry, str]:
    resource = DRAFT202012.create_resource(schema)
    base = resource.id() or ""
    return Registry().with_resource(base, resource).crawl(), base


def _validator(schema: dict[str, Any]) -> Any:
    registry, _ = _registry(schema)
    return Validator(schema, registry=registry)


def check_schema(schema: Any, *, field: str, budget_ms: float = REGISTRATION_BUDGET_MS) -> None:
    """Raise SchemaInvalid unless `schema` is a Draft 2020-12 schema whose refs all resolve
    locally, whose patterns RE2 runs and whose references always consume the value.
    Each error's pointer is in the request body: `/<field>/...`. CPU-bound (bounded by
    `budget_ms`): call it through `off_loop`."""
    if not isinstance(schema, (dict, bool)):
        raise SchemaInvalid(f"{field} must be a JSON object (or a boolean schema)")
    if isinstance(schema, bool):
        return
    if schema.get("$schema", _DIALECT).rstrip("#") != _DIALECT:
        raise SchemaInvalid(f"{field}: only Draft 2020-12 schemas are accepted, not {schema['$schema']!r}")
    at = f"/{field}"
    try:  # against the metaschema: seconds for a schema of a megabyte, hence the budget
        with deadline(budget_ms / 1000):
            error = next(_META.iter_errors(schema), None)
    except OutOfTime:
        detail = f"checking the schema took longer than {budget_ms:g} ms: make it smaller"
        raise SchemaInvalid(f"{field}: {detail}", errors=[{"pointer": at, "detail": detail}]) from None
    except RecursionError:
        raise SchemaInvalid(f"{field} is nested too deeply to be checked",
                            errors=[{"pointer": at, "detail": "nested too deeply"}]) from None
    if error is not None:
        raise SchemaInvalid(f"{field}: {error.message}",
                            errors=[{"pointer": at + jsondoc.pointer(error.path), "detail": _short(error.message)}])
    registry, base = _registry(schema)
    graph = schema_refs.walk(schema, registry.resolver(base_uri=base))
    for pointer, ref in graph.unresolvable:
        detail = f"$ref {ref!r} does not resolve inside the schema (remote references are never fetched)"
        raise SchemaInvalid(f"{field}: {detail}", errors=[{"pointer": at + pointer, "detail": detail}])
    refused = [{"pointer": at + pointer, "detail": f"pattern {pattern!r} cannot run on RE2, the linear-time "
                                                   f"engine that checks patterns: {why}"}
               for pointer, pattern in graph.patterns if (why := schema_regex.problem(pattern)) is not None]
    if refused:
        raise SchemaInvalid(f"{field}: {refused[0]['detail']}", errors=refused)
    cycle = schema_refs.find_cycle(graph)
    if cycle is not None:
        detail = (f"the reference at {cycle.pointer} closes a cycle of subschemas that apply to the same value "
                  f"without consuming it ({' -> '.join(cycle.cycle)}): validation would never end")
        raise SchemaInvalid(f"{field}: {detail}", errors=[{"pointer": at + cycle.pointer, "detail": detail}])


def violations(schema: Any, instance: Any, *, budget_ms: float = DEFAULT_BUDGET_MS) -> list[dict[str, str]]:
    """Every violation of `schema` by `instance`, each with the JSON pointer of where it is.

    Bounded: past `budget_ms` of validation, or on an instance too deep to walk, the answer is
    one violation at the document ("") saying so. CPU-bound: call it off the event loop
    (violations_off_loop) for anything a tenant sent or printed."""
    if isinstance(schema, bool):
        return [] if schema else [{"pointer": "", "detail": "the schema accepts nothing"}]
    found = []
    try:
        with deadline(budget_ms / 1000):
            for error in _validator(schema).iter_errors(instance):
                found.append({"pointer": jsondoc.pointer(error.absolute_path), "detail": _short(error.message)})
                if len(found) >= _MAX_VIOLATIONS:
                    break
    except OutOfTime:
        detail = f"validation took longer than {budget_ms:g} ms; the document was not checked"
        return [{"pointer": "", "detail": detail}]
    except RecursionError:
        return [{"pointer": "", "detail": "the document is nested too deeply to be checked against the schema"}]
    except Unresolvable as exc:  # registration refuses these; a stored one is still never fetched
        found.append({"pointer": "", "detail": f"unresolvable reference in the schema: {exc}"})
    found.sort(key=lambda v: v["pointer"])
    return found


async def violations_off_loop(schema: Any, instance: Any, *, budget_ms: float) -> list[dict[str, str]]:
    """`violations` on a validation thread: the event loop keeps serving while it runs."""
    return await off_loop(violations, schema, instance, budget_ms=budget_ms)


_executor: ThreadPoolExecutor | None = None


async def off_loop(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a CPU-bound check (`violations`, `check_schema`, or a pure function calling them)
    on the validation threads, which nothing else uses: a flood of slow documents queues
    there, not in the default executor other blocking calls need."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="schema-check")
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor, call)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "… (cut)"

