"""WASM agents: the one engine configuration that compiles and runs them.

The service compiles an uploaded module once, with wasmtime-py 49.0.0, and the
runtime image runs the result with wasmtime-min 49.0.3 (images/wasm). Both
sides must agree exactly: a `.cwasm` compiled with other engine flags (fuel,
epoch interruption, threads, collector) is refused at run time with exit 1.
So the flags live here, once, for both.

(Issue 5 builds on this. Here so far: the engine contract, and the upload
checks in wasm_module.py. Not yet: per-agent-version images, the upload
endpoint, and running WASM tasks through the container runtime.)
"""

from __future__ import annotations

import wasmtime

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
    timeout, which turns epoch interruption on). No --dir, no --env: the guest gets
    no filesystem and an empty environment."""
    timeout_ms = max(1, int(timeout_s * 1000))
    return [
        "-W", f"fuel={fuel},timeout={timeout_ms}ms,max-memory-size={max_memory_bytes}",
        "--allow-precompiled", CWASM_PATH,
    ]
