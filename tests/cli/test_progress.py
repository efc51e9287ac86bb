"""Progress of an image build: on a terminal one line redrawn in place (a spinner, the elapsed
seconds, the step) with human log lines; otherwise one plain line a step and JSON log lines.

Each test builds an image of its own (a fresh content hash: never cached) on the busybox base,
in a copy of the images folder, and removes it after."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.cli.conftest import run
from tests.conftest import REPO

HUMAN_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} INFO ", re.MULTILINE)


@pytest.fixture
def slow_image(images, docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(name, images folder) of a two-second build that nobody else has built."""
    name = f"cli-progress-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "images"
    shutil.copytree(REPO / "images" / "busybox", folder / "busybox")
    (folder / name).mkdir()
    (folder / name / "image.json").write_text('{"base": "busybox"}')
    (folder / name / "Dockerfile").write_text(f"ARG BASE\nFROM ${{BASE}}\nRUN sleep 2\nLABEL test={name}\n")
    yield name, folder
    for image in docker_client.images.list(name=f"executor/{name}"):
        docker_client.images.remove(image.id, force=True)


def run_on_a_terminal(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """`executor ARGS` with stdin, stdout and stderr on a pseudo-terminal: (exit code, what it showed)."""
    parent, child = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "executor", *args], stdin=child, stdout=child, stderr=child,
                               env=env, cwd=REPO, close_fds=True)
    os.close(child)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([parent], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(parent, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not chunk:
                    break
                shown += chunk
            elif process.poll() is not None:
                break
        return process.wait(timeout=10), shown.decode("utf-8", "replace")
    finally:
        os.close(parent)
        if process.poll() is None:
            process.kill()


def build_env(folder: Path, **more: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_") and k != "NO_COLOR"}
    return {**base, "EXECUTOR_IMAGES_DIR": str(folder), **more}


def test_a_build_on_a_terminal_shows_a_spinner_and_human_logs(slow_image) -> None:
    name, folder = slow_image
    code, shown = run_on_a_terminal("images", "build", name, env=build_env(folder, NO_COLOR="1"))
    assert code == 0, shown
    redrawn = [part for part in shown.split("\r") if "building images" in part]
    assert len(redrawn) >= 5, shown  # redrawn in place, several times a second
    assert re.search(r"building images [12]s  " + re.escape(name) + r": Step \d/\d : RUN sleep 2", shown), shown
    assert "\x1b[K" in shown  # each redraw clears the line first
    assert HUMAN_LOG_LINE.search(shown) and '{"ts"' not in shown, shown  # EXECUTOR_LOG_FORMAT=auto: human
    assert re.search(r"\x1b\[[0-9;]*m", shown) is None, shown  # NO_COLOR: no colour anywhere
    assert f"{name}: built executor/{name}:latest" in shown


def test_a_build_elsewhere_prints_one_line_a_step(slow_image) -> None:
    name, folder = slow_image
    done = run("images", "build", name, "--json", env={"EXECUTOR_IMAGES_DIR": str(folder)})
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
    lines = done.stderr.splitlines()
    assert f"{name}: building (dockerfile)" in lines and any(line.endswith(": RUN sleep 2") for line in lines)
    assert json.loads(lines[0])["message"].startswith(f"building {name} from ")  # JSON logs: not a terminal
    (built,) = json.loads(done.stdout)
    assert built["name"] == name and built["cached"] is False
