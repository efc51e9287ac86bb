"""The TypeScript SDK (clients/typescript): its generated files match openapi.json, it typechecks,
its unit tests pass, and the marketplace flow holds against a live service with the SDK alone.

Needs Node 20+ and npm on PATH (skipped otherwise) and npm's registry for `npm ci` (skipped when
node_modules already matches package-lock.json: a stamp file holds the lock's sha256)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServiceProcess

SDK = Path(__file__).resolve().parents[2] / "clients" / "typescript"
STAMP = SDK / "node_modules" / ".executor-lock-sha256"


def npm(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `npm ARGS` in the SDK; fails the test with its output when it exits non-zero."""
    result = subprocess.run(["npm", *args], cwd=SDK, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "NO_COLOR": "1", **(env or {})})
    if result.returncode != 0:
        pytest.fail(f"`npm {' '.join(args)}` exited {result.returncode}\n--- stdout\n{result.stdout[-6000:]}"
                    f"\n--- stderr\n{result.stderr[-4000:]}", pytrace=False)
    return result


@pytest.fixture(scope="session")
def built_sdk() -> Iterator[Path]:
    """The SDK installed from its lock file (once per lock) and built into dist/."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the TypeScript SDK")
    major = int(subprocess.run(["node", "-p", "process.versions.node.split('.')[0]"], capture_output=True,
                               text=True, check=True).stdout.strip())
    if major < 20:
        pytest.skip(f"the TypeScript SDK needs Node 20+, not {major}")
    lock = hashlib.sha256((SDK / "package-lock.json").read_bytes()).hexdigest()
    if not (STAMP.exists() and STAMP.read_text().strip() == lock):
        npm("ci", "--no-audit", "--no-fund", timeout=600)
        STAMP.write_text(lock + "\n")
    npm("run", "build")
    yield SDK


def test_generated_files_match_the_document_and_typecheck(built_sdk: Path) -> None:
    npm("run", "check:generated")
    npm("run", "typecheck")


def test_receipt_fixtures_are_the_services_verdicts(tmp_path: Path) -> None:
    """test/fixtures/receipts.json (the bundles and the reasons executor/receipts gives for each,
    which the SDK's unit tests must agree with) is what the service's code makes today."""
    fresh = tmp_path / "receipts.json"
    subprocess.run([sys.executable, str(SDK / "test" / "fixtures" / "make_receipts.py"), str(fresh)], check=True,
                   capture_output=True, timeout=60, cwd=SDK.parents[1])
    checked_in = SDK / "test" / "fixtures" / "receipts.json"
    assert fresh.read_text() == checked_in.read_text(), (
        "stale fixture: run `.venv/bin/python clients/typescript/test/fixtures/make_receipts.py`")


def test_unit_tests_pass(built_sdk: Path) -> None:
    result = npm("test", timeout=300)
    assert "# fail 0" in result.stdout, result.stdout[-4000:]


def test_marketplace_flow_against_the_live_service(built_sdk: Path, market_service: ServiceProcess) -> None:
    result = npm("run", "flow", timeout=600, env={"EXECUTOR_URL": market_service.base_url,
                                                   "EXECUTOR_OPERATOR_TOKEN": market_service.operator_token})
    print(result.stdout)  # every check, shown with `pytest -rP`
    assert "the marketplace flow holds" in result.stdout, result.stdout[-6000:]
