"""The Draft 2020-12 validator executor runs tenants' schemas with: bounded in time.

jsonschema's own keywords are kept, except where one could take time the budget cannot
interrupt (a keyword is only checked against the deadline when it starts):

- every keyword that reads a pattern (`pattern`, `patternProperties`, and the two that decide
  which properties `patternProperties` covered: `additionalProperties`, `unevaluatedProperties`)
  uses RE2 through executor.schema_regex, never Python's backtracking `re`;
- `uniqueItems` hashes a canonical form of each item (linear) instead of comparing every pair
  (quadratic: 50 000 small objects in an array took minutes);
- `anyOf` and `oneOf` stop at the first error of each branch and keep none as context (the
  context tree grows exponentially over recursive references: 250 MB and 200 ms garbage-
  collector pauses, which stop the event loop too, in a 2 s budget).

Every keyword function is wrapped: once the deadline of the current thread has passed it
raises OutOfTime (`deadline()` sets it around one validation), and every millisecond it
releases the GIL so the event loop's thread is not kept waiting for it (bench/hostile_schemas.py).
"""

from __future__ import annotations

import contextlib
import math
import reprlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema._utils import extras_msg  # the messages stay jsonschema's own
from jsonschema.exceptions import ValidationError

from executor import schema_regex


class OutOfTime(Exception):
    """Validation ran past its deadline (internal: schemas.violations turns it into a violation)."""


# A validation thread hands the GIL over this often: the event loop's thread then waits for it
# about this long, not a whole switch interval (5 ms) each time it wakes up.
_YIELD_EVERY_S = 0.001


class _Clock(threading.local):
    deadline = math.inf
    yield_at = math.inf


_clock = _Clock()


@contextlib.contextmanager
def deadline(budget_s: float) -> Iterator[None]:
    """Keywords evaluated in this thread inside the block raise OutOfTime after `budget_s`."""
    now = time.monotonic()
    _clock.deadline, _clock.yield_at = now + budget_s, now + _YIELD_EVERY_S
    try:
        yield
    finally:
        _clock.deadline = _clock.yield_at = math.inf


_brief = reprlib.Repr()
_brief.maxstring = _brief.maxother = 80
_brief.maxlevel = 3


def brief(value: Any) -> str:
    """A bounded repr for messages: an instance may be a megabyte deep."""
    return _brief.repr(value)


def _timed(keyword: Callable[..., Any]) -> Callable[..., Any]:
    def checked(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        now = time.monotonic()
        if now > _clock.yield_at:
            if now > _clock.deadline:
                raise OutOfTime
            time.sleep(0)  # releases the GIL
            _clock.yield_at = time.monotonic() + _YIELD_EVERY_S
        return keyword(validator, value, instance, schema)

    checked.__name__ = getattr(keyword, "__name__", "keyword")
    return checked


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not schema_regex.search(pattern, instance):
        yield ValidationError(f"{brief(instance)} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any,
                        schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if schema_regex.search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    return [key for key in instance
            if key not in properties and not any(schema_regex.search(p, key) for p in patterns)]


def _additional_properties(validator: Any, additional: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = _additional(instance, schema)
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {patterns}")
        else:
            listed, verb = extras_msg(sorted(extras, key=str))
            yield ValidationError(f"Additional properties are not allowed ({listed} {verb} unexpected)")


def _valid(errors: Iterator[ValidationError]) -> bool:
    return next(errors, None) is None


def _evaluated_keys(validator: Any, instance: dict[str, Any], schema: Any) -> set[str]:
    """jsonschema's find_evaluated_property_keys_by_schema (MIT), with patterns on RE2."""
    if validator.is_type(schema, "boolean"):
        return set()
    keys: set[str] = set()
    for keyword in ("$ref", "$dynamicRef"):
        ref = schema.get(keyword)
        if ref is not None:
            resolved = validator._resolver.lookup(ref)
            keys |= _evaluated_keys(validator.evolve(schema=resolved.contents, _resolver=resolved.resolver),
                                    instance, resolved.contents)
    properties = schema.get("properties")
    if validator.is_type(properties, "object"):
        keys |= properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        if (subschema := schema.get(keyword)) is not None:
            keys |= {key for key, value in instance.items() if _valid(validator.descend(value, subschema))}
    for pattern in schema.get("patternProperties", {}):
        keys |= {key for key in instance if schema_regex.search(pattern, key)}
    for key, subschema in schema.get("dependentSchemas", {}).items():
        if key in instance:
            keys |= _evaluated_keys(validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if _valid(validator.descend(instance, subschema)):
                keys |= _evaluated_keys(validator, instance, subschema)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys |= _evaluated_keys(validator, instance, schema["if"])
            if "then" in schema:
                keys |= _evaluated_keys(validator, instance, schema["then"])
        elif "else" in schema:
            keys |= _evaluated_keys(validator, instance, schema["else"])
    return keys


def _unevaluated_properties(validator: Any, unevaluated: Any, instance: Any,
                            schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated_keys(validator, instance, schema)
    failed = [key for key in instance if key not in evaluated
              and not _valid(validator.descend(instance[key], unevaluated, path=key, schema_path=key))]
    if failed:
        if unevaluated is False:
            listed, verb = extras_msg(sorted(failed, key=str))
            yield ValidationError(f"Unevaluated properties are not allowed ({listed} {verb} unexpected)")
        else:
            listed, verb = extras_msg(failed)
            yield ValidationError("Unevaluated properties are not valid under the given schema "
                                  f"({listed} {verb} unevaluated and invalid)")


def _any_of(validator: Any, subschemas: list[Any], instance: Any, schema: Any) -> Iterator[ValidationError]:
    # jsonschema keeps every failing branch's errors as the error's context: over recursive
    # references that tree grows exponentially with the depth (250 MB in a 2 s budget, and
    # garbage-collector pauses that stop the event loop too). A report names the place only.
    if not any(_valid(validator.descend(instance, sub, schema_path=i)) for i, sub in enumerate(subschemas)):
        yield ValidationError(f"{brief(instance)} is not valid under any of the given schemas")


def _one_of(validator: Any, subschemas: list[Any], instance: Any, schema: Any) -> Iterator[ValidationError]:
    valid = []
    for index, subschema in enumerate(subschemas):
        if _valid(validator.descend(instance, subschema, schema_path=index)):
            valid.append(index)
            if len(valid) > 1:
                yield ValidationError(f"{brief(instance)} is valid under more than one of the given schemas "
                                      f"(at least {valid[0]} and {valid[1]})")
                return
    if not valid:
        yield ValidationError(f"{brief(instance)} is not valid under any of the given schemas")


def _canonical(value: Any) -> Any:
    """A hashable form equal for JSON-equal values: 1 == 1.0, but true != 1, and objects unordered."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z",)
    if isinstance(value, list):
        return ("a", tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("o", frozenset((key, _canonical(item)) for key, item in value.items()))
    return ("?", id(value))


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not (unique and validator.is_type(instance, "array")):
        return
    seen: set[Any] = set()
    for item in instance:
        key = _canonical(item)
        if key in seen:
            yield ValidationError(f"{brief(instance)} has non-unique elements")
            return
        seen.add(key)


_OWN: dict[str, Callable[..., Any]] = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "unevaluatedProperties": _unevaluated_properties,
    "uniqueItems": _unique_items,
    "anyOf": _any_of,
    "oneOf": _one_of,
}

Validator: Any = validators.extend(  # type: ignore[no-untyped-call]  # types-jsonschema leaves extend() unannotated
    Draft202012Validator,
    {name: _timed(_OWN.get(name) or keyword) for name, keyword in Draft202012Validator.VALIDATORS.items()},
)
