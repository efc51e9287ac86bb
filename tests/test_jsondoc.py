"""Unit tests of reading untrusted JSON documents (pure logic)."""

from __future__ import annotations

import json

import pytest

from executor import jsondoc
from executor.jsondoc import MAX_DEPTH, DocumentRefused


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("text, pointer", [
    ('{"x": NaN}', None), ('[Infinity]', None), ('{"a": [-Infinity]}', None),
    ('{"x": 1e400}', "/x"), ('[1, -1e999]', "/1"), ('{"x": "a\\u0000b"}', "/x"), ('{"a\\u0000": 1}', "/a\x00"),
    ('{"x": ["\\ud800"]}', "/x/0"), ('{"\\udfff": 1}', "/\udfff"), ('{"x": ' + "9" * 5000 + "}", None),
    (nested(MAX_DEPTH + 1), "/0" * MAX_DEPTH), (nested(100_000), None), ('{"a": ', None), (b"\xff\xfe{", None),
    ('{"x": 1}'.encode("utf-16"), None), ('{"x": 1}'.encode("utf-32-le"), None), (b"\xef\xbb\xbf{}", None),
])
def test_documents_no_later_step_could_handle_are_refused(text: str | bytes, pointer: str | None) -> None:
    with pytest.raises(DocumentRefused) as refused:
        jsondoc.loads(text.encode() if isinstance(text, str) else text)
    assert refused.value.pointer == pointer
    assert refused.value.reason
    # The message quotes no character a text column cannot hold.
    str(refused.value).encode("utf-8")
    assert "\x00" not in str(refused.value)


@pytest.mark.parametrize("document", [
    {"x": 1.5e308, "y": -0.0, "z": 10**4000}, nested(MAX_DEPTH), "\u00e9\U0001F600", [None, True, "", {}],
])
def test_documents_within_the_rules_are_read_as_json_reads_them(document: object) -> None:
    text = document if isinstance(document, str) and document.startswith("[") else json.dumps(document)
    assert jsondoc.loads(text.encode()) == json.loads(text)


def test_storable_text_escapes_only_what_cannot_be_stored() -> None:
    assert jsondoc.storable_text("plain é") == "plain é"
    assert jsondoc.storable_text("a\x00b\ud800") == "a\\u0000b\\ud800"
