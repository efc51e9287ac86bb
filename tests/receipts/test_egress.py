"""Egress bound into receipts (pure logic): the digest of a task's recorded egress list, the
statement's optional `egress` field, and verify_bundle checking a list against it."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
import rfc8785

from executor.receipts.canonical import CanonicalizationError
from executor.receipts.egress import EGRESS_FIELDS, egress_digest, egress_problems
from executor.receipts.jwk import key_set
from executor.receipts.statement import FIELDS, receipt_statement, statement_problems
from executor.receipts.verify import verify_bundle
from executor.records.agents import AgentVersion
from executor.records.executions import ExecutionRecord, Status, Usage
from executor.settings import Limits
from tests.receipts.outside import verify_independently
from tests.receipts.test_verify import T0, Log, reasons

ENTRIES: list[dict[str, Any]] = [
    {"seq": 1, "method": "POST", "upstream": "models", "path": "/v1/chat", "status": 200, "bytes_out": 120,
     "bytes_in": 2048, "duration_ms": 35, "outcome": "ok", "reason": None},
    {"seq": 2, "method": "GET", "upstream": "search", "path": "/q?s=caf\u00e9", "status": 404, "bytes_out": 0,
     "bytes_in": 17, "duration_ms": 9, "outcome": "ok", "reason": None},
    {"seq": 3, "method": "DELETE", "upstream": "models", "path": "/v1/x", "status": 403, "bytes_out": 0,
     "bytes_in": 0, "duration_ms": 0, "outcome": "refused", "reason": "method not declared"},
]
CANONICAL_FIRST = (b'[{"bytes_in":2048,"bytes_out":120,"duration_ms":35,"method":"POST","outcome":"ok",'
                   b'"path":"/v1/chat","reason":null,"seq":1,"status":200,"upstream":"models"}]')


def digest() -> dict[str, Any]:
    return egress_digest(ENTRIES)


# ── The digest ──


def test_the_digest_is_the_sha256_of_the_canonical_list_with_totals() -> None:
    assert egress_digest(ENTRIES[:1]) == {"sha256": hashlib.sha256(CANONICAL_FIRST).hexdigest(), "requests": 1,
                                          "bytes_out": 120, "bytes_in": 2048}
    found = digest()
    assert list(found) == list(EGRESS_FIELDS)
    assert (found["requests"], found["bytes_out"], found["bytes_in"]) == (3, 120, 2065)
    # Pinned: a receipt signed today must verify against the same list forever.
    assert found["sha256"] == "812e5f9d302817cbbe8c4e8ba164d215aca215d775c634feebcb6f0eddc6be07"
    assert egress_digest([]) == {"sha256": hashlib.sha256(b"[]").hexdigest(), "requests": 0, "bytes_out": 0,
                                 "bytes_in": 0}


def test_the_digest_ignores_key_order_but_not_list_order() -> None:
    shuffled = [dict(reversed(list(entry.items()))) for entry in ENTRIES]
    assert egress_digest(shuffled) == digest()
    assert egress_digest(list(reversed(ENTRIES)))["sha256"] != digest()["sha256"]


def test_the_digest_agrees_with_an_outside_rfc8785_implementation() -> None:
    rng = random.Random(21)
    alphabet = "abc/?=&%é€\U0001f600\"\\\n\t\x00"
    for _ in range(200):
        entries = [{"seq": seq, "method": rng.choice(["GET", "POST", "PUT"]),
                    "upstream": "".join(rng.choices(alphabet, k=rng.randint(0, 8))),
                    "path": "/" + "".join(rng.choices(alphabet, k=rng.randint(0, 30))),
                    "status": rng.choice([None, 200, 404, 502]), "bytes_out": rng.randint(0, 2**40),
                    "bytes_in": rng.randint(0, 2**40), "duration_ms": rng.randint(0, 10**6),
                    "outcome": rng.choice(["ok", "refused", "error"]),
                    "reason": rng.choice([None, "ünknown host", "cap: requests"]),
                    **({"extra": {"nested": [1, True, None]}} if rng.random() < 0.2 else {})}
                   for seq in range(rng.randint(0, 6))]
        assert egress_digest(entries)["sha256"] == hashlib.sha256(rfc8785.dumps(entries)).hexdigest()


def test_a_list_without_a_canonical_form_is_refused() -> None:
    with pytest.raises(CanonicalizationError):
        egress_digest([{**ENTRIES[0], "duration_ms": 1.5}])


# ── Checking a list against a digest ──


@pytest.mark.parametrize(("name", "edit"), [
    ("a changed status", lambda entries: entries[0].update(status=500)),
    ("a dropped entry", lambda entries: entries.pop(1)),
    ("a changed byte count", lambda entries: entries[0].update(bytes_in=2047)),
    ("an added entry", lambda entries: entries.append({**entries[0], "seq": 4})),
    ("a reordered list", lambda entries: entries.reverse()),
    ("an added key", lambda entries: entries[2].update(note="hi")),
])
def test_an_edited_list_does_not_match(name: str, edit: Any) -> None:
    entries = copy.deepcopy(ENTRIES)
    edit(entries)
    problems = egress_problems(digest(), entries)
    assert problems and "is not the list the receipt records" in problems[0], name
    assert egress_problems(digest(), copy.deepcopy(ENTRIES)) == []


def test_totals_that_do_not_add_up_are_named() -> None:
    lying = {**digest(), "bytes_out": 1}
    assert egress_problems(lying, ENTRIES) == ["the egress given totals bytes_out 120 (the receipt says 1)"]


@pytest.mark.parametrize("entries", [None, {}, "[]", [1], [ENTRIES[0], []]])
def test_what_is_not_a_list_of_objects(entries: Any) -> None:
    assert egress_problems(digest(), entries) == ["the egress given is not a JSON array of objects"]


def test_entries_need_integer_byte_counts() -> None:
    entries = [{**ENTRIES[0], "bytes_out": "120"}, {k: v for k, v in ENTRIES[1].items() if k != "bytes_in"}]
    assert egress_problems(digest(), entries) == ["entry 0 has no integer bytes_out", "entry 1 has no integer bytes_in"]
    assert egress_problems(digest(), [{**ENTRIES[0], "bytes_out": True}]) == ["entry 0 has no integer bytes_out"]
    assert "cannot be RFC 8785" in egress_problems(digest(), [{**ENTRIES[0], "status": 2.5}])[0]


# ── The statement ──


def _record(egress: dict[str, Any] | None) -> ExecutionRecord:
    return ExecutionRecord(id=uuid.uuid4(), agent_id=uuid.uuid4(), agent_version=1, owner="user:alice",
                           status=Status.COMPLETED, input={"text": "hi"},
                           limits=Limits(memory_mb=256, cpus=1.0, pids=64, timeout_s=30.0), created_at=T0,
                           started_at=T0, finished_at=T0 + timedelta(seconds=1), exit_code=0,
                           usage=Usage(wall_ms=1000, cpu_ms=3), egress=egress)


def _agent() -> AgentVersion:
    return AgentVersion(agent_id=uuid.uuid4(), name="a", kind="container", version=1, image="x",
                        image_digest="sha256:" + "ab" * 32, command=None, input_schema={}, output_schema={},
                        limits=Limits(memory_mb=256, cpus=1.0, pids=64, timeout_s=30.0), pool=None,
                        description=None, owner="service:s", created_at=T0)


def _statement(egress: dict[str, Any] | None) -> dict[str, Any]:
    return receipt_statement(_record(egress), _agent(), stdin=b"{}", stdout=b"{}", log_id=str(uuid.uuid4()),
                             log_index=0, key_id="k", issued_at=datetime.now(UTC))


def test_a_statement_has_egress_only_when_the_record_has_it() -> None:
    without = _statement(None)
    assert set(without) == set(FIELDS) and statement_problems(without) == []
    bound = _statement(digest())
    assert bound["egress"] == digest() and set(bound) == set(FIELDS) | {"egress"}
    assert statement_problems(bound) == [] and bound["receipt_version"] == 1


@pytest.mark.parametrize(("egress", "problem"), [
    (None, "egress must be object"),
    ([], "egress must be object"),
    ({"sha256": "00" * 32, "requests": 0, "bytes_out": 0}, "egress must have exactly"),
    ({**digest(), "bodies": 0}, "egress must have exactly"),
    ({**digest(), "sha256": "AB" * 32}, "egress.sha256 must be a lower-case hex SHA-256"),
    ({**digest(), "sha256": None}, "egress.sha256 must be a lower-case hex SHA-256"),
    ({**digest(), "requests": -1}, "egress.requests must be a non-negative int"),
    ({**digest(), "bytes_in": True}, "egress.bytes_in must be a non-negative int"),
    ({**digest(), "bytes_out": "1"}, "egress.bytes_out must be a non-negative int"),
])
def test_a_malformed_egress_field_is_named(egress: Any, problem: str) -> None:
    statement = {**_statement(None), "egress": egress}
    problems = statement_problems(statement)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


# ── verify_bundle ──


def _bundle(egress: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, nacl.signing.VerifyKey]]:
    key = nacl.signing.SigningKey.generate()
    log = Log(key, egress=egress)
    for minute in range(3):
        log.append(T0 + timedelta(minutes=minute))
    return log.bundle(1, log.head(T0 + timedelta(hours=1))), {log.kid: key.verify_key}


def test_a_bundle_with_egress_verifies_with_its_list_or_without_one() -> None:
    bundle, keys = _bundle(digest())
    assert verify_bundle(bundle, keys).valid
    report = verify_bundle(bundle, keys, egress=copy.deepcopy(ENTRIES))
    assert report.valid, report.failures
    assert report.statement is not None and report.statement["egress"] == digest()
    assert verify_independently(bundle, key_set(keys.values()), egress=ENTRIES)["egress"] == digest()


@pytest.mark.parametrize("edit", [
    lambda entries: entries[1].update(status=200),
    lambda entries: entries.pop(),
    lambda entries: entries[2].update(bytes_out=1),
    lambda entries: entries.clear(),
])
def test_an_edited_list_fails_the_bundle(edit: Any) -> None:
    bundle, keys = _bundle(digest())
    entries = copy.deepcopy(ENTRIES)
    edit(entries)
    report = verify_bundle(bundle, keys, egress=entries)
    assert reasons(report) == {"egress_mismatch"}
    assert "is not the list the receipt records (3 requests" in report.failures[0].detail


def test_a_list_for_a_receipt_without_egress_fails() -> None:
    bundle, keys = _bundle(None)
    assert verify_bundle(bundle, keys).valid
    for given in ([], ENTRIES):
        report = verify_bundle(bundle, keys, egress=given)
        assert reasons(report) == {"egress_mismatch"}
        assert "records no egress" in report.failures[0].detail
    bound, keys = _bundle(digest())
    report = verify_bundle(bound, keys, egress="nope")
    assert [(f.reason, f.detail) for f in report.failures] == [
        ("egress_mismatch", "the egress given is not a JSON array of objects")]


# ── The CLI: executor receipts verify --egress ──


def test_the_cli_checks_an_egress_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from executor.cli.app import main

    bundle, keys = _bundle(digest())
    (tmp_path / "receipt.json").write_text(json.dumps(bundle))
    (tmp_path / "keys.json").write_text(json.dumps(key_set(keys.values())))
    (tmp_path / "list.json").write_text(json.dumps(ENTRIES))
    answer = {"execution_id": str(uuid.uuid4()), "final": True, "data": ENTRIES, "digest": digest()}
    (tmp_path / "answer.json").write_text(json.dumps(answer))
    (tmp_path / "edited.json").write_text(json.dumps({**answer, "data": ENTRIES[:2]}))
    (tmp_path / "none.json").write_text(json.dumps({**answer, "data": None}))
    (tmp_path / "junk.json").write_text(json.dumps({"items": []}))

    def run(egress: str, *more: str) -> int:
        return main(["receipts", "verify", str(tmp_path / "receipt.json"), "--keys", str(tmp_path / "keys.json"),
                     "--egress", str(tmp_path / egress), *more])

    assert run("list.json") == 0 and run("answer.json") == 0
    assert "egress: 3 requests, 120 bytes out, 2065 bytes in" in capsys.readouterr().out
    assert run("edited.json", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert [f["reason"] for f in report["failures"]] == ["egress_mismatch"]
    assert report["receipt"]["egress"] == digest()
    for unusable, says in (("none.json", "no egress list"), ("junk.json", "not an egress list")):
        assert run(unusable) != 0
        assert says in capsys.readouterr().err


# ── The API's body: POST /v1/receipts/verify {receipt, egress} ──


@pytest.mark.parametrize("egress", ["[]", [1], {"data": []}, [ENTRIES[0], None]])
async def test_the_api_refuses_an_egress_that_is_not_a_list_of_objects(egress: Any) -> None:
    from executor.errors import RequestInvalid
    from executor.receipts.service import Receipts

    with pytest.raises(RequestInvalid) as refused:  # before any key is read: no database needed
        await Receipts(None, None).verify({"receipt": {}, "egress": egress})  # type: ignore[arg-type]
    assert refused.value.errors == [{"pointer": "/egress", "detail": "array of objects"}]
