"""Reading a JSON document from someone we do not trust: a request body or an agent's stdout.

Python's json module accepts more than JSON and more than PostgreSQL's jsonb can hold, and a
document it accepts can still break what comes after it (a schema check, the storage, a receipt).
`loads` accepts exactly the documents every later step can handle, and says why it refuses one:

- RFC 8259 JSON only, in UTF-8 (no byte order mark): `NaN`, `Infinity` and `-Infinity` are
  refused;
- numbers that fit a double: `1e400` (read as infinity) is refused; an integer longer than
  Python will read (4300 digits) is refused instead of raising a bare ValueError;
- strings (values and keys) that jsonb can store: no U+0000, no unpaired surrogate (I-JSON,
  RFC 7493);
- at most MAX_DEPTH levels of arrays and objects, so no later recursive walk (jsonschema,
  canonical JSON, PostgreSQL's parser) can run out of stack on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

MAX_DEPTH = 64  # as .NET's System.Text.Json; serde_json stops at 128, Go at 10,000


class DocumentRefused(ValueError):
    """The bytes are not a document we accept; `pointer` (RFC 6901) says where, when known.
    The message shows the pointer escaped (it may hold the very character refused)."""

    def __init__(self, reason: str, pointer: str | None = None) -> None:
        super().__init__(reason if pointer is None else f"{reason} at {storable_text(pointer) or '/'}")
        self.reason = reason
        self.pointer = pointer


def _refuse_constant(name: str) -> Any:
    raise DocumentRefused(f"{name} is not a JSON number")


def loads(raw: bytes | str) -> Any:
    """The document in `raw`, or DocumentRefused saying why not."""
    try:
        # UTF-8 only (RFC 8259 §8.1): json.loads would also guess UTF-16 and UTF-32 from bytes.
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        document = json.loads(text, parse_constant=_refuse_constant)
    except DocumentRefused:
        raise
    except RecursionError:
        raise DocumentRefused(f"nested deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError as exc:
        raise DocumentRefused(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise DocumentRefused(f"not valid JSON: {exc}") from None
    except ValueError as exc:  # an integer past sys.get_int_max_str_digits()
        raise DocumentRefused(f"a number that cannot be read: {exc}") from None
    check(document)
    return document


def check(document: Any) -> None:
    """DocumentRefused unless every number is finite, every string storable and the nesting
    within MAX_DEPTH. Iterative, so a deep document cannot exhaust the stack here; lean, since
    it visits every value of up to megabytes (a path is kept per container, a pointer made only
    for the value refused)."""
    if type(document) is dict or type(document) is list:
        _walk(document)
    else:
        _check_value(document, None, None)


_Path = tuple[Any, Any] | None  # (the parent's path, the key): a linked list, one per container


def _walk(root: dict[str, Any] | list[Any]) -> None:
    stack: list[tuple[Any, int, _Path]] = [(root, 1, None)]  # a container and its level (the root's: 1)
    while stack:
        node, level, path = stack.pop()
        items = node.items() if type(node) is dict else enumerate(node)
        for key, item in items:
            if type(key) is str and not _storable(key):
                _check_text(key, _pointer((path, key)))
            kind = type(item)
            if kind is dict or kind is list:
                if level >= MAX_DEPTH:
                    raise DocumentRefused(f"nested deeper than {MAX_DEPTH} levels", _pointer((path, key)))
                if item:  # an empty one holds nothing to check
                    stack.append((item, level + 1, (path, key)))
            elif kind is str or kind is float:
                _check_value(item, path, key)


def _check_value(value: Any, path: _Path, key: Any) -> None:
    if type(value) is str:
        if not _storable(value):
            _check_text(value, _pointer((path, key)) if key is not None else "")
    elif type(value) is float and not math.isfinite(value):
        where = _pointer((path, key)) if key is not None else ""
        raise DocumentRefused("a number outside the range of a double", where)


def _storable(text: str) -> bool:
    return "\x00" not in text and (text.isascii() or _encodes(text))


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _pointer(path: _Path) -> str:
    keys = []
    while path is not None:
        path, key = path
        keys.append(key)
    return pointer(reversed(keys))


def pointer(keys: Iterable[Any]) -> str:
    """RFC 6901: '' for the document, '/a/0/b~1c' for a nested member."""
    return "".join("/" + escape(str(key)) for key in keys)


def _check_text(text: str, pointer: str) -> None:
    if "\x00" in text:
        raise DocumentRefused("a string holding U+0000", pointer)
    if not _encodes(text):
        raise DocumentRefused("a string holding an unpaired surrogate", pointer)


def storable_text(text: str) -> str:
    """`text` with U+0000 and unpaired surrogates written as escapes, so PostgreSQL can store it
    (for messages that quote what a task printed)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def escape(token: str) -> str:
    """One reference token of an RFC 6901 pointer."""
    return token.replace("~", "~0").replace("/", "~1")
