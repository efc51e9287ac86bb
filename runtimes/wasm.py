"""WASM agents: the one engine configuration that compiles and runs them.

The service compiles an uploaded module once, with wasmtime-py 49.0.0, and the
runtime image runs the result with wasmtime-min 49.0.3 (images/wasm). Both
sides must agree exactly: a `.cwasm` compiled with other engine flags (fuel,
epoch interruption, threads, collector) is refused at run time with exit 1.
So the flags live here, once, for both.

A WASM task runs in the same hardened container as every task, from a
per-agent-version image `FROM` the runtime image holding /agent/agent.cwasm;
`classify` reads what wasmtime says about how it ended.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import replace

import docker.errors
import wasmtime

from runtimes.base import TaskResult, Termination
from runtimes.engine import DockerEngine

# The runtime image's binary reports this; wasmtime-py 49.0.0 produces its format.
RUNTIME_VERSION = "wasmtime 49.0.3"
CWASM_PATH = "/agent/agent.cwasm"


def engine() -> wasmtime.Engine:
    """The engine every module is compiled with: fuel and epochs on (every run passes
    both a fuel budget and a timeout), wasm threads off (wasmtime-min has none)."""
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.wasm_threads = False
    return wasmtime.Engine(config)


def precompile(wasm: bytes, compiler: wasmtime.Engine | None = None) -> bytes:
    """A `.cwasm` for the runtime image. `wasm` must be a checked binary module: a
    bytearray keeps wasmtime-py from ever parsing it as WAT text."""
    if not wasm.startswith(b"\0asm"):
        raise ValueError("not a WebAssembly binary module")
    return wasmtime.Module(compiler or engine(), bytearray(wasm)).serialize()


def run_arguments(*, fuel: int, timeout_s: float, max_memory_bytes: int) -> list[str]:
    """The runtime image's command line; its flags must match `engine()` (fuel and a
    timeout, which turns epoch interruption on). A memory.grow past the cap traps
    instead of returning -1, so that it can be reported. No --dir, no --env: the
    guest gets no filesystem and an empty environment."""
    timeout_ms = max(1, int(timeout_s * 1000))
    return [
        "-W", f"fuel={fuel},timeout={timeout_ms}ms,max-memory-size={max_memory_bytes},trap-on-grow-failure=y",
        "--allow-precompiled", CWASM_PATH,
    ]


def memory_cap_bytes(container_memory_mb: int) -> int:
    """Linear memory stays under the container's limit, so wasmtime reports it
    rather than the kernel killing the container without a word."""
    return container_memory_mb * 1024 * 1024 * 3 // 4


def classify(result: TaskResult) -> TaskResult:
    """Refine a WASM task's end from wasmtime's exit code and stderr.

    Exit 134 is always a trap (a guest cannot exit with it), and wasmtime prints
    its `wasm trap:` line after anything the guest wrote, so the last such line is
    wasmtime's. A failed memory.grow exits 1 with `forcing trap when growing
    memory`; a guest could print that itself, but only to misreport its own failure.
    """
    if result.termination is not Termination.EXITED:
        return result
    lines = result.stderr.decode(errors="replace").splitlines()
    if result.exit_code == 134:
        trap = next((line for line in reversed(lines) if "wasm trap:" in line), "wasm trap")
        if "all fuel consumed" in trap:
            return replace(result, termination=Termination.FUEL_EXHAUSTED, detail="the agent used up its fuel")
        if "interrupt" in trap:
            return replace(result, termination=Termination.TIMEOUT, detail="wall-clock limit reached (wasmtime)")
        return replace(result, termination=Termination.WASM_TRAP, detail=trap.strip())
    if result.exit_code == 1 and any("forcing trap when growing memory" in line for line in lines):
        return replace(result, termination=Termination.OOM, detail="linear memory would grow past its cap")
    return result


async def bake_image(engine: DockerEngine, base: str, cwasm: bytes, *, tag: str, labels: dict[str, str]) -> str:
    """The per-agent-version image: `base` plus /agent/agent.cwasm, built from memory
    (no file of the host is involved). Returns its image id."""
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", f"FROM {base}\nCOPY agent.cwasm {CWASM_PATH}\n".encode()),
                           ("agent.cwasm", cwasm)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o444
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)

    def build() -> str:
        image, _ = engine.client.images.build(fileobj=context, custom_context=True, rm=True, pull=False,
                                              tag=tag, labels=labels)
        return image.id

    try:
        return await engine.call(build)
    except docker.errors.BuildError as exc:
        raise RuntimeError(f"baking the agent image failed: {exc.msg}") from exc
