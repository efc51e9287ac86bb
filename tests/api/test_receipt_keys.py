"""Signing keys end to end: the ring file, rotation while serving, retirement, the JWK set,
and the CLI that an outside party runs to verify a receipt."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from executor.receipts.jwk import parse_key_set
from executor.receipts.verify import verify_bundle
from tests.api.test_receipts import public_keys, receipt_of, statement_of
from tests.conftest import REPO, ServiceProcess, serving


def cli(svc: ServiceProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "executor", *args], env=svc.env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
async def keys_service(postgres, redis_server, images):
    async with serving(postgres, redis_server, "keys", redis_db="3") as running:
        yield running


async def test_rotate_then_retire_a_key_while_serving(keys_service) -> None:
    svc, api = keys_service
    ring = Path(svc.env["EXECUTOR_STATE_DIR"]) / "signing-keys.json"
    assert ring.stat().st_mode & 0o777 == 0o600, oct(ring.stat().st_mode)
    agent_id = await api.register(["cat"])
    first = await receipt_of(api, (await api.run(agent_id, {"n": 1}))["id"])
    old_kid = statement_of(first)["key_id"]
    assert [k["kid"] for k in (await public_keys(api))["keys"]] == [old_kid]

    rotated = cli(svc, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new_kid = json.loads(rotated.stdout)["kid"]
    assert new_kid != old_kid and ring.stat().st_mode & 0o777 == 0o600
    # The running service picks the new key up within a second of the file's change.
    for attempt in range(30):
        later = await receipt_of(api, (await api.run(agent_id, {"n": 2 + attempt}))["id"])
        if statement_of(later)["key_id"] == new_kid:
            break
    assert statement_of(later)["key_id"] == new_kid
    jwks = await public_keys(api)
    assert {k["kid"] for k in jwks["keys"]} == {old_kid, new_kid}
    assert verify_bundle(first, parse_key_set(jwks)).valid  # old receipts keep verifying

    retired = cli(svc, "keys", "retire", old_kid)
    assert retired.returncode == 0, retired.stderr
    assert json.loads(retired.stdout)["private_key_dropped"] is True
    assert old_kid not in ring.read_text()
    jwks = await public_keys(api)
    assert [k["kid"] for k in jwks["keys"]] == [new_kid]
    offline = verify_bundle(first, parse_key_set(jwks))
    assert {f.reason for f in offline.failures} == {"unknown_key", "head_unknown_key"}, offline.failures
    status, report, _ = await api.as_token(None).post("/v1/receipts/verify", json={"receipt": first})
    assert status == 200, report
    assert {f["reason"] for f in report["failures"]} == {"key_retired", "head_key_retired"}, report
    assert verify_bundle(later, parse_key_set(jwks)).valid

    listed = cli(svc, "keys", "list")
    assert listed.returncode == 0 and f"{old_kid}" in listed.stdout and "retired" in listed.stdout
    assert f"{new_kid}" in listed.stdout and "signing" in listed.stdout
    refused = cli(svc, "keys", "retire", new_kid)
    assert refused.returncode == 2 and "rotate first" in refused.stderr


async def test_the_cli_verifies_a_receipt_and_names_what_fails(keys_service, tmp_path: Path) -> None:
    svc, api = keys_service
    agent_id = await api.register(["cat"])
    record = await api.run(agent_id, {"text": "to be checked offline"})
    bundle = await receipt_of(api, record["id"])
    (tmp_path / "receipt.json").write_text(json.dumps(bundle))
    (tmp_path / "input").write_bytes(await api.get_bytes(f"/v1/executions/{record['id']}/input"))
    (tmp_path / "output").write_bytes(await api.get_bytes(f"/v1/executions/{record['id']}/stdout"))
    (tmp_path / "keys.json").write_text(json.dumps(await public_keys(api)))
    status, head, _ = await api.get("/v1/log/head")
    assert status == 200, head
    (tmp_path / "head.json").write_text(json.dumps(head))

    files = ["--input", str(tmp_path / "input"), "--output", str(tmp_path / "output")]
    for keys in (str(tmp_path / "keys.json"), svc.base_url + "/v1/keys"):
        checked = cli(svc, "receipts", "verify", str(tmp_path / "receipt.json"), "--keys", keys, *files,
                      "--head", str(tmp_path / "head.json"))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "receipt: valid" in checked.stdout and "holds" in checked.stdout

    (tmp_path / "other").write_bytes(b'{"text":"something else"}')
    wrong = cli(svc, "receipts", "verify", str(tmp_path / "receipt.json"), "--keys", str(tmp_path / "keys.json"),
                "--input", str(tmp_path / "other"), "--json")
    assert wrong.returncode == 1
    report = json.loads(wrong.stdout)
    assert [f["reason"] for f in report["failures"]] == ["input_hash_mismatch"]

    bundle["envelope"]["signatures"][0]["sig"] = base64.b64encode(b"\0" * 64).decode()
    (tmp_path / "forged.json").write_text(json.dumps(bundle))
    forged = cli(svc, "receipts", "verify", str(tmp_path / "forged.json"), "--keys", str(tmp_path / "keys.json"))
    assert forged.returncode == 1 and "signature_invalid:" in forged.stdout and "DOES NOT HOLD" in forged.stdout


async def test_a_signing_key_from_the_environment(postgres, redis_server, images) -> None:
    import nacl.signing

    from executor.receipts.jwk import key_id

    seed = nacl.signing.SigningKey.generate()
    async with serving(postgres, redis_server, "envkey", redis_db="3",
                       signing_key=base64.b64encode(bytes(seed)).decode()) as (svc, api):
        record = await api.run(await api.register(["cat"]))
        assert statement_of(await receipt_of(api, record["id"]))["key_id"] == key_id(seed.verify_key)
        assert not (Path(svc.env["EXECUTOR_STATE_DIR"]) / "signing-keys.json").exists()
        refused = cli(svc, "keys", "rotate")
        assert refused.returncode == 2 and "EXECUTOR_SIGNING_KEY" in refused.stderr
        assert svc.env["EXECUTOR_SIGNING_KEY"] not in svc.log_path.read_text()  # never logged
