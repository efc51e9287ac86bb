"""RFC 8785 canonical JSON: the RFC's own examples (those without floats), a cross-check
against the outside implementation `rfc8785` on generated values, and the refusals."""

from __future__ import annotations

import collections
import enum
import json
import random

import pytest
import rfc8785

from executor.receipts.canonical import (
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    canonical_json,
    json_pointer,
)

# ── The RFC's examples ──


def test_rfc8785_sorting_example() -> None:
    # RFC 8785 §3.2.3: sorted by UTF-16 code units, so the emoji (D83D DE00) comes before U+FB33.
    value = json.loads(r"""{
        "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis"}""")
    expected = ('{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
                '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
                '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}')
    assert canonical_json(value) == expected.encode("utf-8")


def test_rfc8785_string_and_literals_example() -> None:
    # RFC 8785 §3.2.2 / §3.2.4, without its "numbers" member (floats are refused here).
    value = json.loads(r"""{"string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                           "literals": [null, true, false]}""")
    expected = '{"literals":[null,true,false],"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    assert canonical_json(value) == expected.encode("utf-8")


@pytest.mark.parametrize("char, escaped", [
    ('"', '\\"'), ("\\", "\\\\"), ("\b", "\\b"), ("\f", "\\f"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"),
    ("\x00", "\\u0000"), ("\x1f", "\\u001f"), ("\x0b", "\\u000b"), ("\x1b", "\\u001b"),
    ("\x7f", "\x7f"), ("\u2028", "\u2028"), ("\u2029", "\u2029"), ("/", "/"), ("\ufeff", "\ufeff"),
    ("\U0010ffff", "\U0010ffff"),
])
def test_string_escapes_are_ecmascripts(char: str, escaped: str) -> None:
    assert canonical_json(char) == f'"{escaped}"'.encode()


def test_scalars_and_empty_containers() -> None:
    assert canonical_json(None) == b"null"
    assert canonical_json(True) == b"true" and canonical_json(False) == b"false"  # not 1 / 0
    assert canonical_json(0) == b"0" and canonical_json(-7) == b"-7"
    assert canonical_json(MAX_SAFE_INTEGER) == b"9007199254740991"
    assert canonical_json(-MAX_SAFE_INTEGER) == b"-9007199254740991"
    assert canonical_json({}) == b"{}" and canonical_json([]) == b"[]" and canonical_json("") == b'""'
    assert canonical_json({"b": [1, {"d": None, "c": True}], "a": ""}) == b'{"a":"","b":[1,{"c":true,"d":null}]}'


def test_utf16_order_differs_from_code_point_order() -> None:
    value = {"\ue000": 1, "\U0001f600": 2, "\uffff": 3, "\U00010000": 4}
    # Code points would give E000, FFFF, 10000, 1F600; UTF-16 units give D800 DC00, D83D DE00, E000, FFFF.
    assert canonical_json(value) == '{"\U00010000":4,"\U0001f600":2,"\ue000":1,"\uffff":3}'.encode("utf-8")


# ── Cross-check with the outside implementation ──

_ALPHABETS = [
    [chr(c) for c in range(0x20, 0x7F)],
    [chr(c) for c in range(0x20)] + ["\x7f", "\u2028", "\u2029", '"', "\\"],
    [chr(c) for c in range(0x80, 0x800, 7)],
    [chr(c) for c in range(0xE000, 0xF900, 61)] + ["\ufb33", "\ufeff", "\uffff", "\ufffd"],
    [chr(c) for c in range(0x10000, 0x110000, 4099)] + ["\U0001f600", "\U00010000", "\U0010ffff"],
    ["\u20ac", "\u00f6", "\u0080", "é", "e\u0301"],  # composed and decomposed: JCS does no normalization
]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(rng.choice(_ALPHABETS)) for _ in range(rng.randrange(0, 9)))


def _value(rng: random.Random, depth: int) -> object:
    kind = rng.randrange(8 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([rng.randrange(-1000, 1000), rng.randrange(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1),
                           MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 2**32, -(2**31)])
    if kind in (3, 4, 5):
        return _text(rng)
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randrange(0, 7))}


def test_matches_rfc8785_on_generated_values() -> None:
    rng = random.Random(8785)
    objects = 0
    for _ in range(3000):
        value = {_text(rng): _value(rng, 1) for _ in range(rng.randrange(0, 6))}
        ours = canonical_json(value)
        assert ours == rfc8785.dumps(value), value
        assert json.loads(ours) == value  # and it is JSON that reads back to the same value
        objects += 1
    assert objects == 3000


def test_matches_rfc8785_on_keys_that_share_prefixes() -> None:
    rng = random.Random(3)
    stems = ["a", "\ue000", "\U0001f600", "\uffff", "\x00"]
    for _ in range(500):
        keys = {"".join(rng.choice(stems) for _ in range(rng.randrange(1, 4))) for _ in range(8)}
        value = {key: rng.randrange(100) for key in keys}
        assert canonical_json(value) == rfc8785.dumps(value)


# ── Refusals ──


class Colour(enum.Enum):
    RED = "red"


class Count(enum.IntEnum):
    ONE = 1


class Role(str, enum.Enum):
    USER = "user"


@pytest.mark.parametrize("value, where, reason", [
    (1.0, "the top level", "float 1.0 refused"),
    ({"amount": 12.5}, "'/amount'", "float 12.5 refused"),
    ([0, [float("nan")]], "'/1/0'", "float nan refused"),
    ({"a": -0.0}, "'/a'", "float -0.0 refused"),
    (2**53, "the top level", "integer 9007199254740992 is outside"),
    ({"n": -(2**53)}, "'/n'", "integer -9007199254740992 is outside"),
    ({"n": 10**30}, "'/n'", "is outside"),
    ({"s": "ok\ud800"}, "'/s'", "string has a lone surrogate U+D800 at offset 2"),
    (["\udfff"], "'/0'", "lone surrogate U+DFFF"),
    ({"k\udc00": 1}, "the top level", "key 'k\\udc00' has a lone surrogate U+DC00 at offset 1"),
    ({1: "one"}, "the top level", "object key 1 is int, not str"),
    ({"a": {None: 1}}, "'/a'", "object key None is NoneType, not str"),
    ({"a": {True: 1}}, "'/a'", "object key True is bool"),
    ((1, 2), "the top level", "tuple is not a JSON value"),
    ({"a": [(1,)]}, "'/a/0'", "tuple is not a JSON value"),
    ({"a": {1, 2}}, "'/a'", "set is not a JSON value"),
    ({"a": b"bytes"}, "'/a'", "bytes is not a JSON value"),
    ({"a/b": {"c~d": 0.5}}, "'/a~1b/c~0d'", "float 0.5 refused"),
    ({"e": Colour.RED}, "'/e'", "Colour is not a JSON value"),
    ({"e": Count.ONE}, "'/e'", "Count is not a JSON value"),
    ({"e": Role.USER}, "'/e'", "Role is not a JSON value"),
    (collections.OrderedDict(a=1), "the top level", "OrderedDict is not a JSON value"),
])
def test_refusals_say_where_and_why(value: object, where: str, reason: str) -> None:
    with pytest.raises(CanonicalizationError) as caught:
        canonical_json(value)
    assert str(caught.value).startswith(f"at {where}: "), str(caught.value)
    assert reason in str(caught.value)


def test_refuses_nesting_too_deep_and_cycles() -> None:
    deep: list[object] = []
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(CanonicalizationError, match="nested deeper than 256"):
        canonical_json(deep)
    loop: dict[str, object] = {}
    loop["self"] = loop
    with pytest.raises(CanonicalizationError, match="nested deeper"):
        canonical_json(loop)
    fine: list[object] = []
    for _ in range(200):
        fine = [fine]
    assert canonical_json(fine) == b"[" * 201 + b"]" * 201


def test_json_pointer_escapes_per_rfc6901() -> None:
    assert json_pointer(()) == ""
    assert json_pointer(("a/b", "m~n", "0", "")) == "/a~1b/m~0n/0/"
