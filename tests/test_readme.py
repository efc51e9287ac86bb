"""The README's run command, run as written: it brings the service up with the
example agent, prints a token and a curl line, and that curl line works."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time

from executor.embedded import free_port
from tests.conftest import REPO, private_tmpdir

EXPECTED = {  # each example agent's output for its example input
    "wordcount": {"words": 3, "lines": 0, "chars": 16},
    "wordcount-wasm": {"words": 3, "lines": 0, "chars": 16},
    "shout": {"TEXT": "HELLO WIDE WORLD"},
    "stats": {"count": 8, "sum": 31, "mean": 3.875, "min": 1, "max": 9},
}


def readme_command(name: str) -> str:
    """The first line of the README's command block that starts with `name`."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"## The two commands.*?```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no block of the two commands"
    for line in block.group(1).splitlines():
        if line.startswith(name):
            return line.split("#", 1)[0].strip()
    raise AssertionError(f"no {name} command in README.md")


def test_readme_names_the_test_command_ci_runs() -> None:
    assert readme_command("scripts/test") == "scripts/test"
    assert "scripts/test" in (REPO / ".ci" / "run").read_text()


def test_readme_run_command_brings_up_a_working_service(images) -> None:
    state_dir = private_tmpdir("executor-readme-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_")}
    env.update(EXECUTOR_STATE_DIR=str(state_dir), EXECUTOR_PORT=str(port))
    process = subprocess.Popen(
        ["bash", "-c", readme_command("scripts/up")], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    lines: list[str] = []
    try:
        token = None
        curls: dict[str, str] = {}
        receipt_lines: list[str] = []
        deadline = time.monotonic() + 600
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline().decode()
            if not line:
                raise AssertionError("scripts/up exited:\n" + "".join(lines[-60:]))
            lines.append(line)
            if "export EXECUTOR_TOKEN=" in line:
                token = line.split("=", 1)[1].strip()
            if line.startswith("run the example agent "):
                agent = line.removeprefix("run the example agent ").rstrip(":\n")
            if (line.strip().startswith("curl ") and "/receipt" in line) or "receipts verify" in line:
                receipt_lines.append(line.strip())
            elif line.strip().startswith("curl ") and "/v1/executions" in line:
                curls[agent] = line.strip()
            if set(curls) == set(EXPECTED) and len(receipt_lines) == 2:
                break
        assert token and set(curls) == set(EXPECTED), "".join(lines[-60:])

        # Each example runs as printed: cold first, then from the pool it refilled meanwhile.
        for pooled in (False, True):
            for agent, curl in curls.items():
                assert f"127.0.0.1:{port}" in curl
                done = subprocess.run(["bash", "-c", curl], env={**env, "EXECUTOR_TOKEN": token},
                                      capture_output=True, timeout=60)
                record = json.loads(done.stdout)
                assert record["status"] == "COMPLETED", record
                assert record["output"] == EXPECTED[agent], (agent, record)
                assert record["pooled"] is pooled, (agent, record)
            time.sleep(3)

        # The receipt lines, as printed, check the last run's receipt offline.
        receipt_env = {**env, "EXECUTOR_TOKEN": token, "ID": record["id"],
                       "PATH": f"{REPO / '.venv' / 'bin'}:{env['PATH']}"}
        for line in receipt_lines:
            done = subprocess.run(["bash", "-c", line], env=receipt_env, cwd=state_dir, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0, (line, done.stdout, done.stderr)
        assert "receipt: valid" in done.stdout, done.stdout
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    # Its private servers stop with it.
    leftovers = subprocess.run(["pgrep", "-f", str(state_dir)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left running: {leftovers}"
    shutil.rmtree(state_dir, ignore_errors=True)
