"""Progress of an image build: on a terminal one line redrawn in place (a spinner, the elapsed
seconds, the step) with human log lines; otherwise one plain line a step and JSON log lines.

Each test builds an image of its own (a fresh content hash: never cached) on the busybox base,
in a copy of the images folder, and removes it after. `executor up` builds the example images
on its first start (the Debian base among them, about a minute with debootstrap); its test
gives it, through EXECUTOR_EXAMPLE_IMAGES, an example of its own on a base of its own instead,
so that the shared executor/* images are neither rebuilt nor retagged."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from executor.embedded import free_port
from tests.cli.conftest import run
from tests.conftest import REPO, private_tmpdir

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


class Terminal:
    """`executor ARGS` with stdin, stdout and stderr on a pseudo-terminal, and what it has shown."""

    def __init__(self, *args: str, env: dict[str, str], timeout: float = 120) -> None:
        self.parent, child = pty.openpty()
        self.process = subprocess.Popen([sys.executable, "-m", "executor", *args], stdin=child, stdout=child,
                                        stderr=child, env=env, cwd=REPO, close_fds=True)
        os.close(child)
        self.shown = b""
        self.deadline = time.monotonic() + timeout

    def read_until(self, done: Callable[[str], bool] = lambda text: False) -> str:
        """What it has shown once `done` says so, its output ends or the deadline passes."""
        while not done(self.text) and time.monotonic() < self.deadline:
            ready, _, _ = select.select([self.parent], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.parent, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not chunk:
                    break
                self.shown += chunk
            elif self.process.poll() is not None:
                break
        return self.text

    @property
    def text(self) -> str:
        return self.shown.decode("utf-8", "replace")

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.parent)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_on_a_terminal(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """`executor ARGS` on a pseudo-terminal to its end: (exit code, what it showed)."""
    with Terminal(*args, env=env, timeout=timeout) as terminal:
        text = terminal.read_until()
        return terminal.process.wait(timeout=10), text


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


@pytest.fixture
def example_on_a_new_base(images, docker_client: docker.DockerClient,
                          tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(example, its base, images folder): an example image on a base image that nobody else has
    built (three seconds), like stats-python on the Debian base."""
    suffix = uuid.uuid4().hex[:8]
    base, example = f"cli-up-base-{suffix}", f"cli-up-{suffix}"
    folder = tmp_path / "images"
    shutil.copytree(REPO / "images" / "busybox", folder / "busybox")
    for name, recipe, build in ((base, '{"base": "busybox"}', "RUN sleep 3"),
                                (example, f'{{"base": "{base}"}}', "RUN true")):
        (folder / name).mkdir()
        (folder / name / "image.json").write_text(recipe)
        (folder / name / "Dockerfile").write_text(f"ARG BASE\nFROM ${{BASE}}\n{build}\nLABEL test={name}\n")
    yield example, base, folder
    for name in (example, base):
        for image in docker_client.images.list(name=f"executor/{name}"):
            docker_client.images.remove(image.id, force=True)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """Where `executor up` keeps its private PostgreSQL and Redis (traversable by their user)."""
    path = private_tmpdir("executor-cli-up-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_up_on_a_terminal_shows_the_base_build_and_human_logs(example_on_a_new_base, state_dir: Path) -> None:
    example, base, folder = example_on_a_new_base
    env = build_env(folder, NO_COLOR="1", EXECUTOR_EXAMPLE_IMAGES=example, EXECUTOR_STATE_DIR=str(state_dir),
                    EXECUTOR_PORT=str(free_port()))
    with Terminal("up", env=env) as terminal:
        # Up only when serving (its signal handlers are in place): then SIGTERM stops it cleanly.
        text = terminal.read_until(lambda text: "executor is up on" in text)
        assert "executor is up on" in text, text
        terminal.process.send_signal(signal.SIGTERM)
        text = terminal.read_until()  # to the end of its output
        assert terminal.process.wait(timeout=30) == 0, text
    # The base is built first, its step on the line redrawn in place (a spinner, the seconds).
    redrawn = [part for part in text.split("\r") if "building the example images" in part]
    assert len(redrawn) >= 5, text
    assert re.search(r"building the example images [1-9]\d*s  " + re.escape(base) + r": Step \d/\d : RUN sleep 3",
                     text), text
    assert f"{example}: " in text and text.index(f"{base}: ") < text.index(f"{example}: "), text
    assert "\x1b[K" in text
    # Human log lines (EXECUTOR_LOG_FORMAT unset: auto), never JSON, no colour (NO_COLOR).
    assert HUMAN_LOG_LINE.search(text) and '{"ts"' not in text, text
    assert re.search(r"\x1b\[[0-9;]*m", text) is None, text
    assert "stopping: letting running tasks finish" in text, text
