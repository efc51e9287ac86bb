"""A second Docker engine on this machine, standing in for a second host: its own socket,
data root, exec root, pidfile and containerd, no bridge and no iptables rules, so that it
shares nothing with the machine's own engine. Used by tests/queue/test_two_engines.py and
bench/two_engines.py.

The engine can be killed (SIGKILL to dockerd and its containerd: the host's engine is gone)
and started again on the same directories (its containers are still there, stopped)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import docker
import docker.errors

DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"


class SecondEngine:
    """One extra `dockerd` under `base` (a private directory of the caller's)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data_root = base / "data"
        self.exec_root = base / "exec"
        self.pidfile = base / "dockerd.pid"
        self.socket = base / "docker.sock"
        self.log_path = base / "dockerd.log"
        self.config = base / "daemon.json"  # not the machine's /etc/docker/daemon.json
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """What DOCKER_HOST should say for a process that drives this engine."""
        return f"unix://{self.socket}"

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=60)

    def start(self, timeout: float = 60.0) -> None:
        """Start dockerd and wait until it answers; raises with its log when it does not."""
        for path in (self.data_root, self.exec_root):
            path.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps({}))
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [DOCKERD, f"--host={self.url}", f"--data-root={self.data_root}", f"--exec-root={self.exec_root}",
                 f"--pidfile={self.pidfile}", f"--config-file={self.config}",
                 "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
                 "--userland-proxy=false", "--storage-driver=overlay2"],
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the second dockerd exited ({self.process.returncode}):\n{self.log_tail()}")
            try:  # docker-py asks the engine for its version as the client is made
                client = self.client()
            except docker.errors.DockerException:
                time.sleep(0.2)  # not listening yet
                continue
            with contextlib.closing(client):
                if client.ping():
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the second dockerd did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else "(no log)"

    def _containerd_pid(self) -> int | None:
        """The containerd this dockerd started (it outlives a killed dockerd)."""
        pidfile = self.exec_root / "containerd" / "containerd.pid"
        try:
            return int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """The engine dies at once, as with its host: SIGKILL to dockerd and to its containerd.
        The task containers' shims are left as they are; the next start finds the containers."""
        containerd = self._containerd_pid()
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
            self.process = None
        if containerd is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(containerd, signal.SIGKILL)
            _wait_gone(containerd)

    def stop(self) -> None:
        """A clean stop (dockerd stops its containers and its containerd), else a kill."""
        containerd = self._containerd_pid()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
            self.process = None
        if containerd is not None and not _wait_gone(containerd, 10):
            with contextlib.suppress(ProcessLookupError):
                os.kill(containerd, signal.SIGKILL)
            _wait_gone(containerd)

    def remove(self) -> None:
        """After stop(): unmount what the engine left mounted under its directories, delete them."""
        for mount_point in sorted(_mounts_under(self.base), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount_point], check=False, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def _wait_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _mounts_under(base: Path) -> list[str]:
    prefix = str(base.resolve()) + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].replace("\\040", " ")
        if mount_point.startswith(prefix) or mount_point == prefix[:-1]:
            found.append(mount_point)
    return found


def copy_images(source: docker.DockerClient, target: docker.DockerClient, references: list[str]) -> None:
    """Copy images from one engine to another (`docker save | docker load`): the image ids stay
    the same, which is what the workers need (agent versions are pinned to the id)."""
    for reference in references:
        image = source.images.get(reference)
        with contextlib.suppress(docker.errors.ImageNotFound):
            if target.images.get(image.id).id == image.id:
                continue
        # Saved under `reference` itself (image.save(named=True) would name it by its first tag only).
        loaded = target.images.load(source.api.get_image(reference))
        assert any(copy.id == image.id for copy in loaded), (reference, [copy.id for copy in loaded])
