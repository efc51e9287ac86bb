"""WASM agents: the one engine configuration that compiles and runs them.

The service compiles an uploaded module once, with wasmtime-py 49.0.0, and the
runtime image runs the result with wasmtime-min 49.0.3 (images/wasm). Both
sides must agree exactly: a `.cwasm` compiled with other engine flags (fuel,
epoch interruption, threads, collector) is refused at run time with exit 1.
So the flags live here, once, for both.

The machine code targets a stated CPU baseline (x86-64-v2), not the CPU of the
host that compiles: wasmtime refuses a `.cwasm` that uses a feature the running
CPU lacks, and gVisor's guest, like another worker host, offers fewer features
than the API host (docs/wasm.md has the measured cost).

A WASM task runs in the same hardened container as every task, from a
per-agent-version image `FROM` the runtime image holding /agent/agent.cwasm;
`classify` reads what wasmtime says about how it ended.
"""

from __future__ import annotations

import io
import platform
import re
import tarfile
from dataclasses import replace

import docker.errors
import wasmtime

from runtimes.base import TaskResult, Termination
from runtimes.engine import DockerEngine

# The runtime image's binary reports this; wasmtime-py 49.0.0 produces its format.
RUNTIME_VERSION = "wasmtime 49.0.3"
CWASM_PATH = "/agent/agent.cwasm"

# Per machine architecture: the target triple and the Cranelift preset that name the CPU
# features every `.cwasm` may use. x86-64-v2 (SSE3 to SSE4.2, POPCNT, CMPXCHG16B) is on every
# x86-64 server since 2009 and in gVisor's guest; aarch64's preset-less target is ARMv8.0
# (not tested here: the runtime image is built for x86-64).
CPU_BASELINES = {
    "x86_64": ("x86_64-unknown-linux-gnu", "x86-64-v2"),
    "aarch64": ("aarch64-unknown-linux-gnu", None),
}
# Baked into each agent image's labels, so an image compiled otherwise can be told apart.
TARGET_LABEL = "org.executor.wasm-target"


def cpu_baseline() -> tuple[str, str | None]:
    """(target triple, Cranelift preset) of this machine's architecture."""
    machine = platform.machine().lower()
    found = CPU_BASELINES.get({"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine))
    if found is None:
        raise RuntimeError(f"no WASM CPU baseline for the {machine} architecture")
    return found


def target_name() -> str:
    triple, preset = cpu_baseline()
    return f"{triple}+{preset}" if preset else triple


def engine(*, native: bool = False, preset: str | None = None) -> wasmtime.Engine:
    """The engine every module is compiled with: fuel and epochs on (every run passes
    both a fuel budget and a timeout), wasm threads off (wasmtime-min has none), machine
    code for the CPU baseline. Benchmarks only: `native=True` uses this host's own CPU
    features, `preset` another Cranelift preset (an unknown name aborts the process)."""
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.wasm_threads = False
    if not native:
        triple, baseline = cpu_baseline()
        config.target = triple  # an explicit target: no inference of the host's CPU features
        flag = preset or baseline
        if flag:
            config.cranelift_flag_enable(flag)
    return wasmtime.Engine(config)


def precompile(wasm: bytes, compiler: wasmtime.Engine | None = None) -> bytes:
    """A `.cwasm` for the runtime image. `wasm` must be a checked binary module: a
    bytearray keeps wasmtime-py from ever parsing it as WAT text."""
    if not wasm.startswith(b"\0asm"):
        raise ValueError("not a WebAssembly binary module")
    # A bytearray on purpose, which wasmtime-py's annotation (str | bytes) does not list: bytes or a
    # str not starting with a NUL would be parsed as WAT text.
    module = wasmtime.Module(compiler or engine(), bytearray(wasm))  # type: ignore[arg-type]
    return bytes(module.serialize())


# In the artifact's engine section, each Cranelift ISA flag is (length, name, 2 = bool, value).
_ISA_FLAG = re.compile(rb"([\x01-\x40])(has_[a-z0-9_]+)\x02\x01")


def cpu_features(cwasm: bytes) -> frozenset[str]:
    """The CPU features (Cranelift `has_*` flags) a `.cwasm` of ours requires of the host that
    runs it; wasmtime refuses to load it where one is missing. Only for artifacts we compiled."""
    return frozenset(m.group(2).decode() for m in _ISA_FLAG.finditer(cwasm) if m.group(1)[0] == len(m.group(2)))


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
                                              tag=tag, labels={**labels, TARGET_LABEL: target_name()})
        return str(image.id)

    try:
        return await engine.call(build)
    except docker.errors.BuildError as exc:
        raise RuntimeError(f"baking the agent image failed: {exc.msg}") from exc
