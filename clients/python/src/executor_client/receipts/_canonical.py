"""RFC 8785 (JCS) canonical JSON, as the service signs it (a port of executor/receipts/canonical.py).

Restricted on purpose to what receipts need: objects, arrays, strings, integers,
booleans and null. Floats are refused rather than formatted (RFC 8785 §3.2.2.3)
because nothing we sign should be a float: money is integer minor units and
times are RFC 3339 strings. Integers must be exact as IEEE 754 doubles
(|n| <= 2**53 - 1, RFC 8785 §3.2.2.3 / I-JSON RFC 7493 §2.2), so every JCS
implementation reads them back the same.

Only the exact types dict, list, str, int, bool and None are accepted: a tuple,
an enum or any other subclass is refused, so a signed document never depends on
how some subclass happens to print.
"""

from __future__ import annotations

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 256  # far beyond any receipt; also stops a self-containing list or dict

# ECMAScript JSON.stringify (QuoteJSONString), which RFC 8785 §3.2.2.2 adopts:
# the short escapes, other controls as lowercase \u00xx, everything else literal.
_ESCAPES: dict[int, str] = {code: f"\\u{code:04x}" for code in range(0x20)}
_ESCAPES.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"})


class CanonicalizationError(ValueError):
    """The value cannot be canonicalized; the message says where (a JSON pointer) and why."""


def canonical_json(value: object) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of `value`; raises CanonicalizationError if it has no such form."""
    parts: list[str] = []
    _write(value, (), parts)
    return "".join(parts).encode("utf-8")


def _write(value: object, path: tuple[str, ...], out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif type(value) is bool:  # before int: bool is an int subclass
        out.append("true" if value else "false")
    elif type(value) is int:
        if abs(value) > MAX_SAFE_INTEGER:
            raise _error(path, f"integer {value} is outside ±(2**53 - 1), not exact in every JSON reader")
        out.append(str(value))
    elif type(value) is str:
        out.append(_quote(value, path))
    elif type(value) is list:
        _check_depth(path)
        out.append("[")
        for position, item in enumerate(value):
            if position:
                out.append(",")
            _write(item, (*path, str(position)), out)
        out.append("]")
    elif type(value) is dict:
        _check_depth(path)
        _write_object(value, path, out)
    elif type(value) is float:
        raise _error(path, f"float {value!r} refused: use integer minor units or a string")
    else:
        raise _error(path, f"{type(value).__name__} is not a JSON value here (only dict, list, str, int, bool, None)")


def _write_object(value: dict[object, object], path: tuple[str, ...], out: list[str]) -> None:
    names: list[str] = []
    for name in value:
        if type(name) is not str:
            raise _error(path, f"object key {name!r} is {type(name).__name__}, not str")
        _check_unicode(name, path, f"key {name!r}")
        names.append(name)
    # RFC 8785 §3.2.3: members sorted by the UTF-16 code units of their names
    # (not by code point: they differ once characters beyond U+FFFF appear).
    names.sort(key=lambda name: name.encode("utf-16-be"))
    out.append("{")
    for position, name in enumerate(names):
        if position:
            out.append(",")
        out.append(_quote(name, path))
        out.append(":")
        _write(value[name], (*path, name), out)
    out.append("}")


def _quote(text: str, path: tuple[str, ...]) -> str:
    _check_unicode(text, path, "string")
    return '"' + text.translate(_ESCAPES) + '"'


def _check_unicode(text: str, path: tuple[str, ...], what: str) -> None:
    """Refuse lone surrogates: they have no UTF-8 form, and JCS output is UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        raise _error(path, f"{what} has a lone surrogate U+{code:04X} at offset {exc.start}") from None


def _check_depth(path: tuple[str, ...]) -> None:
    if len(path) >= MAX_DEPTH:
        raise _error(path, f"nested deeper than {MAX_DEPTH} levels")


def _error(path: tuple[str, ...], reason: str) -> CanonicalizationError:
    where = repr(json_pointer(path)) if path else "the top level"
    return CanonicalizationError(f"at {where}: {reason}")


def json_pointer(path: tuple[str, ...]) -> str:
    """The RFC 6901 JSON pointer of a path of member names and array positions ("" is the whole value)."""
    return "".join("/" + token.replace("~", "~0").replace("/", "~1") for token in path)
