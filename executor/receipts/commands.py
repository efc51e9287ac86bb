"""The receipt commands of the CLI: `keys rotate|list|retire`, `receipts verify`, `log audit`.

`receipts verify` and `log audit` are what an outside party runs: they need only the
receipt or the log's public endpoints and the public keys (a file, or a URL).

They return records and print nothing: executor/cli/receipts.py prints them (a table, lines,
or JSON with `--json`).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing

from executor.errors import ConfigurationError, ExecutorError
from executor.receipts.jwk import JwkError, parse_key_set
from executor.receipts.keys import drop_from_ring, read_ring, rotate_ring
from executor.receipts.verify import (
    Report,
    check_consistency,
    check_head,
    verify_bundle,
)
from executor.settings import Settings


@dataclass(frozen=True)
class AuditRound:
    """One round of `log audit`: the head fetched, checked against the head kept before."""

    round: int
    report: Report
    tree_size: int | None = None
    root_hash: str | None = None
    timestamp: str | None = None
    kept_tree_size: int | None = None  # None: no head was kept, this one is the first

    @property
    def valid(self) -> bool:
        return self.report.valid and self.tree_size is not None

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "valid": self.valid, "tree_size": self.tree_size, "root_hash": self.root_hash,
                "timestamp": self.timestamp, "kept_tree_size": self.kept_tree_size,
                "failures": [{"reason": f.reason, "detail": f.detail} for f in self.report.failures]}


def rotate(settings: Settings, database_url: str | None) -> dict[str, Any]:
    if settings.signing_key:
        raise ConfigurationError("the signing key comes from EXECUTOR_SIGNING_KEY: rotate by changing it")
    from executor.storage import receipts as receipt_sql

    new = rotate_ring(settings.resolved_signing_key_file)
    if database_url:  # a running service publishes it too, before its first signature with it
        _run_with_db(database_url, lambda db: receipt_sql.publish_keys(db, [(new.kid, bytes(new.public))]))
    return {"kid": new.kid, "created_at": new.created_at.isoformat(), "ring": str(settings.resolved_signing_key_file)}


def list_keys(settings: Settings, database_url: str) -> list[dict[str, Any]]:
    """Every published key, retired ones included, oldest first; `signing` and `held_here` say
    which one this host signs with and which private halves its ring holds."""
    from executor.storage import receipts as receipt_sql

    ring = [] if settings.signing_key else read_ring(settings.resolved_signing_key_file)
    held = {k.kid for k in ring}
    signing = ring[-1].kid if ring else None
    published = _run_with_db(database_url, lambda db: receipt_sql.published_keys(db, include_retired=True))
    return [{"kid": key.kid, "created_at": key.created_at.isoformat(),
             "retired_at": key.retired_at.isoformat() if key.retired_at else None,
             "signing": key.kid == signing, "held_here": key.kid in held} for key in published]


def retire(settings: Settings, database_url: str, kid: str) -> dict[str, Any]:
    """Stop publishing a key (its receipts stop verifying against the JWK set) and drop its private half."""
    from executor.storage import receipts as receipt_sql

    dropped = False if settings.signing_key else drop_from_ring(settings.resolved_signing_key_file, kid)
    retired_at = _run_with_db(database_url, lambda db: receipt_sql.retire_key(db, kid))
    if retired_at is None and not dropped:
        raise ExecutorError(f"no key {kid}")
    return {"kid": kid, "retired_at": retired_at.isoformat() if retired_at else None, "private_key_dropped": dropped}


def verify(receipt_path: str, *, keys_source: str, input_path: str | None, output_path: str | None,
           head_path: str | None, egress_path: str | None = None) -> Report:
    bundle = _load_json(receipt_path)
    keys = load_keys(keys_source)
    report = verify_bundle(
        bundle, keys,
        input_bytes=Path(input_path).read_bytes() if input_path else None,
        output_bytes=Path(output_path).read_bytes() if output_path else None,
        trusted_head=_load_json(head_path) if head_path else None,
        egress=load_egress(egress_path) if egress_path else None,
    )
    return report


def load_egress(path: str) -> list[dict[str, Any]]:
    """An execution's egress list from a JSON file: the list itself, or GET /v1/executions/{id}/egress's
    answer with the list under `data`."""
    data = _load_json(path)
    if isinstance(data, dict) and "data" in data:
        data = data["data"]
    if data is None:
        raise ExecutorError(f"{path}: no egress list (`data` is null: the agent declared no egress, or the "
                            "execution is not final yet)")
    if not (isinstance(data, list) and all(isinstance(entry, dict) for entry in data)):
        raise ExecutorError(f"{path}: not an egress list (a JSON array of objects, or {{\"data\": [...]}})")
    return data


def audit(base_url: str, *, keys_source: str, state_path: Path, rounds: int,
          interval_s: float) -> Iterator[AuditRound]:
    """Fetch the log's head `rounds` times, a round as it ends; each head must be signed and
    extend the head kept in `state_path` (a consistency proof), which it then replaces. The
    first round that does not verify is the last one (the kept head stays)."""
    keys = load_keys(keys_source)
    for round_number in range(rounds):
        if round_number:
            time.sleep(interval_s)
        envelope = _fetch_json(base_url + "/v1/log/head")
        report = Report()
        new = check_head(envelope, keys, report)
        kept = check_head(_load_json(str(state_path)), keys, report, prefix="kept_head") \
            if state_path.exists() else None
        if new is not None and kept is not None:
            proof: list[bytes] = []
            if kept["tree_size"] < new["tree_size"]:
                answer = _fetch_json(f"{base_url}/v1/log/proof/consistency?from={kept['tree_size']}"
                                     f"&to={new['tree_size']}")
                proof = [bytes.fromhex(h) for h in answer["hashes"]]
            check_consistency(kept, new, proof, report)
        if not report.valid or new is None:
            yield AuditRound(round_number + 1, report, kept_tree_size=kept["tree_size"] if kept else None)
            return
        state_path.write_text(json.dumps(envelope))
        yield AuditRound(round_number + 1, report, tree_size=new["tree_size"], root_hash=new["root_hash"],
                         timestamp=new["timestamp"], kept_tree_size=kept["tree_size"] if kept else None)


def load_keys(source: str) -> dict[str, nacl.signing.VerifyKey]:
    """A JWK set (or one JWK) from a file or an http(s) URL."""
    data = _fetch_json(source) if source.startswith(("http://", "https://")) else _load_json(source)
    try:
        return parse_key_set(data)
    except JwkError as exc:
        raise ExecutorError(f"{source}: not a JWK set of Ed25519 keys: {exc}") from exc


def describe(report: Report, *, what: str = "receipt") -> str:
    """A report for people: the receipt, each signature, and valid or every failure."""
    lines = []
    statement = report.statement
    if statement:
        lines.append(f"receipt of execution {statement['execution_id']}: {statement['status']}, "
                     f"log index {statement['log_index']}, key {statement['key_id']}")
        if "egress" in statement:
            egress = statement["egress"]
            lines.append(f"  egress: {egress['requests']} requests, {egress['bytes_out']} bytes out, "
                         f"{egress['bytes_in']} bytes in (list sha256 {egress['sha256']})")
    for check in report.signatures:
        state = {True: "holds", False: "DOES NOT HOLD", None: "cannot be checked (no key)"}[check.holds]
        lines.append(f"  signature {check.keyid} ({check.signer}, {'trusted' if check.trusted else 'untrusted'}):"
                     f" {state}")
    if report.valid:
        lines.append(f"{what}: valid")
    else:
        lines.append(f"{what}: INVALID")
        lines += [f"  {failure.reason}: {failure.detail}" for failure in report.failures]
    return "\n".join(lines)


def _fetch_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ExecutorError(f"{url}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ExecutorError(f"could not read {url}: {exc}") from exc


def _load_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text() if path != "-" else sys.stdin.read())
    except (OSError, ValueError) as exc:
        raise ExecutorError(f"could not read {path}: {exc}") from exc


def _run_with_db(database_url: str, action: Any) -> Any:
    import asyncio

    from executor.storage.database import create_pool, migrate

    async def run() -> Any:
        pool = await create_pool(database_url)
        try:
            await migrate(pool)
            return await action(pool)
        finally:
            await pool.close()

    return asyncio.run(run())
