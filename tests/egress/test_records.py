"""Egress records and their digest: RFC 8785 (checked against the `rfc8785` package), stable,
and changed by any edit."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import rfc8785

from executor.egress.records import MAX_PATH, EgressEntry, clean_text, digest
from executor.receipts.egress import egress_digest

ENTRIES = [
    EgressEntry(1, "POST", "models", "/chat/completions", 200, 512, 20_480, 830, "forwarded"),
    EgressEntry(2, "GET", None, "/x", 403, 0, 0, 0, "refused", "undeclared_upstream"),
    EgressEntry(3, "GET", "models", "/stream", 200, 0, 10_000, 1200, "failed", "limit_bytes_in"),
]


def test_an_entry_is_a_flat_object_with_no_header_or_body() -> None:
    assert ENTRIES[1].to_dict() == {
        "seq": 2, "method": "GET", "upstream": None, "path": "/x", "status": 403, "bytes_out": 0, "bytes_in": 0,
        "duration_ms": 0, "outcome": "refused", "reason": "undeclared_upstream",
    }
    assert ENTRIES[0].to_dict()["reason"] is None
    assert all(EgressEntry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry for entry in ENTRIES)


def test_the_digest_is_sha256_over_rfc_8785_and_carries_the_totals() -> None:
    document = [entry.to_dict() for entry in ENTRIES]
    assert digest(ENTRIES) == {
        "sha256": hashlib.sha256(rfc8785.dumps(document)).hexdigest(),
        "requests": 3, "bytes_out": 512, "bytes_in": 30_480,
    }


def test_the_digest_is_the_one_a_receipt_binds() -> None:
    assert digest(ENTRIES) == egress_digest([entry.to_dict() for entry in ENTRIES])


def test_the_digest_is_stable_and_catches_any_edit() -> None:
    first = digest(ENTRIES)
    assert digest(list(ENTRIES)) == first
    assert digest(iter(ENTRIES)) == first  # any iterable, read once
    edited = [ENTRIES[0], dataclasses.replace(ENTRIES[1], status=200), ENTRIES[2]]
    assert digest(edited)["sha256"] != first["sha256"]
    assert digest(ENTRIES[:2])["sha256"] != first["sha256"]
    assert digest([ENTRIES[1], ENTRIES[0], ENTRIES[2]])["sha256"] != first["sha256"]  # order is part of it


def test_no_request_is_the_empty_list() -> None:
    assert digest([]) == {"sha256": hashlib.sha256(b"[]").hexdigest(), "requests": 0, "bytes_out": 0, "bytes_in": 0}


def test_whatever_a_task_sent_has_a_canonical_form() -> None:
    assert clean_text("/a b/é/\x00", MAX_PATH) == "/a%20b/%C3%A9/%00"
    assert clean_text("/x\udcff", MAX_PATH) == "/x%FF"  # a byte that was not UTF-8 (surrogateescape)
    assert clean_text("/" + "a" * 5000, MAX_PATH) == "/" + "a" * (MAX_PATH - 1)
    entry = dataclasses.replace(ENTRIES[0], path=clean_text("/\udcff\u2028", MAX_PATH))
    digest([entry])  # no error: printable ASCII only
