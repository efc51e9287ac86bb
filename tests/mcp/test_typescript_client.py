"""The official TypeScript MCP SDK's client (clients/mcp-node-test) lists and calls a user's
agent against the live service, from Node.

Needs Node 20+ and npm on PATH (skipped otherwise); `npm ci` needs npm's registry (skipped when
it cannot be reached, and not run when node_modules already matches package-lock.json: a stamp
file holds the lock's sha256)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from executor.receipts.jwk import parse_key_set
from executor.receipts.verify import verify_bundle
from tests.conftest import Api, ServiceProcess
from tests.mcp.conftest import mcp_url, register_wordcount

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "mcp-node-test"
STAMP = CLIENT / "node_modules" / ".executor-lock-sha256"


def _run(*args: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=CLIENT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})


@pytest.fixture(scope="module")
def installed() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the TypeScript MCP client")
    major = int(_run("node", "-p", "process.versions.node.split('.')[0]", timeout=30).stdout.strip())
    if major < 20:
        pytest.skip(f"the TypeScript MCP SDK needs Node 20+, not {major}")
    lock = hashlib.sha256((CLIENT / "package-lock.json").read_bytes()).hexdigest()
    if not (STAMP.exists() and STAMP.read_text().strip() == lock):
        result = _run("npm", "ci", "--no-audit", "--no-fund", timeout=600)
        if result.returncode != 0:
            if _run("npm", "ping", timeout=60).returncode != 0:
                pytest.skip("npm's registry is unreachable: cannot install the TypeScript MCP SDK")
            pytest.fail(f"`npm ci` exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        STAMP.write_text(lock + "\n")
    return CLIENT


async def test_the_typescript_sdk_lists_and_calls_a_users_agent(installed: Path, operator: Api,
                                                                mcp_service: ServiceProcess,
                                                                images: dict[str, str]) -> None:
    service = await operator.new_token("service")
    user = await operator.new_token("user")
    agent = await register_wordcount(service, images)
    await service.grant(user.subject, agent["id"], uses=3)
    assert user.token is not None
    result = _run("node", "test.mjs", timeout=300, env={
        "MCP_URL": mcp_url(mcp_service), "MCP_TOKEN": user.token, "MCP_TOOL": agent["name"],
        "MCP_TEXT": "from node with love"})
    print(result.stdout)  # every check, shown with `pytest -rP`
    assert result.returncode == 0 and "the MCP flow holds" in result.stdout, result.stdout + result.stderr
    execution_id = next(line.split("=", 1)[1] for line in result.stdout.splitlines()
                        if line.startswith("EXECUTION_ID="))
    record = await user.execution(execution_id)
    assert record["status"] == "COMPLETED" and record["output"]["words"] == 4
    status, bundle, _ = await user.get(f"/v1/executions/{execution_id}/receipt")
    assert status == 200, bundle
    status, jwks, _ = await user.as_token(None).get("/v1/keys")
    assert status == 200 and verify_bundle(bundle, parse_key_set(jwks)).valid
