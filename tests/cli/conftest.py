"""The command line as an operator runs it: `python -m executor …` in a subprocess, against the
session's live service. Client commands get EXECUTOR_URL and EXECUTOR_TOKEN, and a setting no
server knows (EXECUTOR_NOT_A_SETTING): they must not read the server's settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import REPO, ServiceProcess

Cli = Callable[..., subprocess.CompletedProcess[str]]


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`executor ARGS` with none of this process's EXECUTOR_* variables, and `env` added."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_") and k != "NO_COLOR"}
    return subprocess.run([sys.executable, "-m", "executor", *args], env={**base, **(env or {})}, cwd=REPO,
                          input=stdin, capture_output=True, text=True, timeout=timeout)


def client_env(svc: ServiceProcess, token: str | None = None) -> dict[str, str]:
    return {"EXECUTOR_URL": svc.base_url, "EXECUTOR_TOKEN": token or svc.operator_token,
            "EXECUTOR_NOT_A_SETTING": "1"}


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document a successful `--json` command printed."""
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def document(done: subprocess.CompletedProcess[str]) -> Any:
    """The JSON document on stdout, whatever the exit code."""
    return json.loads(done.stdout)


def one_line_error(done: subprocess.CompletedProcess[str], code: int, slug: str) -> None:
    """Failed with `code`, one line `executor: … (slug)` on stderr, no traceback (a server
    command's log lines aside: JSON, as stderr is not a terminal)."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith('{"ts": ')]
    assert len(lines) == 1 and lines[0].startswith("executor: ") and lines[0].endswith(f"({slug})"), done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def cli(service: ServiceProcess) -> Cli:
    """Runs a client command against the session's service with its operator token
    (`token=` another one)."""

    def command(*args: str, token: str | None = None, stdin: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run(*args, env=client_env(service, token), stdin=stdin, timeout=timeout)

    return command
