"""What compiling WASM agents for the CPU baseline costs, against this host's own CPU features.

    .venv/bin/python bench/wasm_cpu.py [-n 15]

Compiles each module three times with the service's engine (runtimes/wasm.py):
for the stated baseline (x86-64-v2, what the service does), for `haswell` (what
one level up would buy) and for the host's own CPU (`native=True`, what it did
before issue 15). Then runs both `.cwasm` with the
runtime image's own `wasmtime-min` (taken out of the image, run on the host so
that container start-up does not drown the difference), interleaved, `-n`
times each, and prints one table. Under gVisor only the baseline artifact
loads at all: that run is timed too when the engine has runsc.

Workloads: `wordcount` (images/wordcount-wasm, C) over a 1 MiB document, and
`kernel` (C, `-O2 -msimd128`: float dot products and integer hashing, the kind
of loop where wider vector instructions could matter).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import docker
import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtimes import wasm
from runtimes.images import IMAGES_DIR, build_images

KERNEL_C = r"""
#include <stdio.h>
#include <stdint.h>
#define N 4096
static float a[N], b[N];
static uint32_t h[N];
int main(void) {
    for (int i = 0; i < N; i++) { a[i] = (float)i * 0.5f; b[i] = (float)(N - i) * 0.25f; h[i] = i * 2654435761u; }
    float dot = 0; uint32_t mix = 0;
    for (int round = 0; round < 6000; round++) {
        for (int i = 0; i < N; i++) { a[i] = a[i] * 0.999f + b[i]; dot += a[i] * b[i]; }
        for (int i = 0; i < N; i++) { h[i] = (h[i] ^ (h[i] >> 13)) * 0x5bd1e995u; mix += h[i]; }
    }
    printf("{\"dot\": %g, \"mix\": %u}\n", (double)dot, mix);
    return 0;
}
"""
RUN_FLAGS = ["-W", "fuel=1000000000000,timeout=600000ms,max-memory-size=268435456,trap-on-grow-failure=y",
             "--allow-precompiled"]


def clang(source: str, output: Path, *extra: str) -> bytes:
    src = output.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["clang", "--target=wasm32-wasi", "-O2", "-s", *extra, "-o", str(output), str(src)], check=True)
    return output.read_bytes()


def wasmtime_min(client: docker.DockerClient, workdir: Path) -> tuple[Path, str]:
    """The runtime image's own binary, copied out of a created (never started) container; the image."""
    (image,) = build_images(client, ["wasm"], progress=lambda line: None)
    container = client.containers.create(image.image_id)
    try:
        stream, _ = container.get_archive("/usr/local/bin/wasmtime")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            data = tar.extractfile("wasmtime").read()  # type: ignore[union-attr]
    finally:
        container.remove()
    path = workdir / "wasmtime-min"
    path.write_bytes(data)
    path.chmod(0o755)
    return path, image.image_id


def compile_ms(engine: wasmtime.Engine, module: bytes, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        wasmtime.Module(engine, bytearray(module)).serialize()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def run_s(command: list[str], stdin: bytes) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    done = subprocess.run(command, check=False, input=stdin, capture_output=True, env={"TOKIO_WORKER_THREADS": "1"})
    elapsed = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr.decode()[-500:]
    return elapsed, done.stdout


def gvisor_run_s(image: str, cwasm: Path, stdin: bytes) -> tuple[float, bytes]:
    """The runtime image under runsc, the module bind-mounted read-only (a bench on our own
    files, not a task)."""
    command = ["docker", "run", "--rm", "-i", "--runtime", "runsc", "--network", "none",
               "-v", f"{cwasm.parent}:/bench:ro", image, *RUN_FLAGS, f"/bench/{cwasm.name}"]
    return run_s(command, stdin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=15)
    args = parser.parse_args()
    client = docker.from_env()
    workdir = Path(tempfile.mkdtemp(prefix="executor-bench-wasm-cpu-"))
    workdir.chmod(0o755)
    binary, runtime_image = wasmtime_min(client, workdir)
    text = ("the quick brown fox jumps over the lazy dog\n" * 24000)[: 1024 * 1024 - 64]
    workloads = {
        "wordcount": (clang((IMAGES_DIR / "wordcount-wasm" / "wordcount.c").read_text(), workdir / "wc.wasm"),
                      json.dumps({"text": text}).encode()),
        "kernel": (clang(KERNEL_C, workdir / "kernel.wasm", "-msimd128"), b""),
    }
    # haswell: x86-64-v3 with AVX itself (Cranelift's x86-64-v3 preset leaves has_avx off, and with it
    # the VEX encodings): what a baseline one level up would buy.
    engines = {"baseline": wasm.engine(), "haswell": wasm.engine(preset="haswell"),
               "native": wasm.engine(native=True)}
    triple, preset = wasm.cpu_baseline()
    print(f"\nWASM CPU baseline {triple} {preset}, n={args.n}, wasmtime-min {binary}\n")
    print("| module | artifact | CPU features required | compile p50 ms | run p50 ms | run p95 ms |")
    print("|---|---|---|---|---|---|")
    gvisor = "runsc" in client.info().get("Runtimes", {})
    for name, (module, stdin) in workloads.items():
        paths, samples, outputs = {}, {kind: [] for kind in engines}, {}
        compiled = {kind: compile_ms(engine, module, 5) for kind, engine in engines.items()}
        for kind, engine in engines.items():
            paths[kind] = workdir / f"{name}.{kind}.cwasm"
            paths[kind].write_bytes(wasmtime.Module(engine, bytearray(module)).serialize())
        for _ in range(args.n):  # interleaved, so that machine load hits both alike
            for kind in engines:
                elapsed, outputs[kind] = run_s([str(binary), *RUN_FLAGS, str(paths[kind])], stdin)
                samples[kind].append(elapsed)
        assert len(set(outputs.values())) == 1, outputs
        for kind in engines:
            features = sorted(f.removeprefix("has_") for f in wasm.cpu_features(paths[kind].read_bytes()))
            ordered = sorted(samples[kind])
            print(f"| {name} | {kind} | {len(features)}: {' '.join(features)} | {compiled[kind]:.1f} "
                  f"| {statistics.median(ordered) * 1000:.1f} | {ordered[int(0.95 * (len(ordered) - 1))] * 1000:.1f} |")
        for kind in ("baseline", "haswell"):
            ratio = statistics.median(samples[kind]) / statistics.median(samples["native"])
            print(f"| {name} | {kind} / native | | {compiled[kind] / compiled['native']:.2f}x | {ratio:.2f}x | |")
        if gvisor:
            runs = [gvisor_run_s(runtime_image, paths["baseline"], stdin)[0] for _ in range(min(args.n, 5))]
            print(f"| {name} | baseline under runsc (docker run, incl. sandbox start) | | "
                  f"| {statistics.median(runs) * 1000:.1f} | |")
            try:
                gvisor_run_s(runtime_image, paths["native"], stdin)
                print(f"| {name} | native under runsc | loaded (this CPU's features all visible) | | | |")
            except AssertionError as refused:
                print(f"| {name} | native under runsc | refused: {str(refused).strip().splitlines()[-1]} | | | |")
    client.close()


if __name__ == "__main__":
    main()
