"""The minimal WASM runtime image runs what the service's wasmtime-py compiles (real engine)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import uuid

import docker
import pytest
import wasmtime

from runtimes.images import build_images
from runtimes.wasm import RUNTIME_VERSION, precompile, run_arguments

ECHO_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (local $n i32)
    (block $done
      (loop $again
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 64512))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
        (local.set $n (i32.load (i32.const 16)))
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store (i32.const 4) (local.get $n))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
        (br $again)))))
"""
SPIN_WAT = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'
HARDENING = ["--network", "none", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
             "--user", "65534:65534", "--memory", "64m", "--memory-swap", "64m", "--pids-limit", "16",
             "--log-driver", "none"]


@pytest.fixture(scope="module")
def wasm_image(docker_client: docker.DockerClient) -> str:
    return build_images(docker_client, ["wasm"], progress=lambda line: None)[-1].tag


def agent_image(client: docker.DockerClient, base: str, wat: str) -> str:
    """An image FROM the runtime image with one precompiled module, built from memory."""
    cwasm = precompile(wasmtime.wat2wasm(wat))
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        # A label of its own makes it a leaf: the build cache may share the layers below
        # with an image the service baked, which must not be deleted with it.
        dockerfile = f"FROM {base}\nCOPY agent.cwasm /agent/agent.cwasm\nLABEL test.image={uuid.uuid4()}\n"
        for name, data in (("Dockerfile", dockerfile.encode()),
                           ("agent.cwasm", cwasm)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o444
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = client.images.build(fileobj=context, custom_context=True, rm=True, pull=False)
    return image.id


def run(image: str, stdin: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", "run", "--rm", "-i", *HARDENING, image, *args], input=stdin,
                          capture_output=True, timeout=60)


def test_the_image_is_minimal(docker_client: docker.DockerClient, wasm_image: str) -> None:
    image = docker_client.images.get(wasm_image)
    assert image.attrs["Size"] < 10 * 1024 * 1024
    assert image.attrs["Config"]["User"] == "65534:65534"
    assert "TOKIO_WORKER_THREADS=1" in image.attrs["Config"]["Env"]
    assert run(wasm_image, b"", "--version").stdout.decode().startswith(RUNTIME_VERSION)
    no_shell = subprocess.run(["docker", "run", "--rm", "--entrypoint", "/bin/sh", wasm_image],
                              capture_output=True, timeout=60)
    assert no_shell.returncode != 0


def test_it_runs_what_the_service_compiles(docker_client: docker.DockerClient, wasm_image: str) -> None:
    echo = agent_image(docker_client, wasm_image, ECHO_WAT)
    try:
        payload = json.dumps({"msg": "hello", "n": [1, 2, 3]}).encode()
        done = run(echo, payload, *run_arguments(fuel=10**9, timeout_s=5, max_memory_bytes=16 * 2**20))
        assert done.returncode == 0, done.stderr
        assert done.stdout == payload
    finally:
        docker_client.images.remove(echo, force=True)


def test_fuel_exhaustion_is_a_trap(docker_client: docker.DockerClient, wasm_image: str) -> None:
    spin = agent_image(docker_client, wasm_image, SPIN_WAT)
    try:
        done = run(spin, b"", *run_arguments(fuel=10**6, timeout_s=5, max_memory_bytes=16 * 2**20))
        assert done.returncode == 134 and b"all fuel consumed" in done.stderr, done.stderr
        done = run(spin, b"", *run_arguments(fuel=10**15, timeout_s=0.3, max_memory_bytes=16 * 2**20))
        assert done.returncode == 134 and b"interrupt" in done.stderr, done.stderr
    finally:
        docker_client.images.remove(spin, force=True)


def test_precompile_refuses_text() -> None:
    with pytest.raises(ValueError):
        precompile(b"(module)")
