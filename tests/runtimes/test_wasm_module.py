"""Unit tests of the upload checks for WebAssembly modules (pure logic, real wasmtime-py)."""

from __future__ import annotations

import hashlib

import pytest
import wasmtime

from runtimes.wasm import precompile
from runtimes.wasm_module import ModuleRejected, check_module

CAP = {"max_bytes": 1 << 20, "max_memory_bytes": 64 << 20}
GOOD = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2 16)
  (func (export "_start")))"""


def wasm(wat: str) -> bytes:
    return wasmtime.wat2wasm(wat)


def rejected(data: bytes, **caps: int) -> ModuleRejected:
    with pytest.raises(ModuleRejected) as caught:
        check_module(data, **{**CAP, **caps})
    return caught.value


def test_a_wasi_command_passes() -> None:
    data = wasm(GOOD)
    info, module = check_module(data, **CAP)
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.size == len(data)
    assert info.imports == ("wasi_snapshot_preview1.fd_write",)
    assert (info.memory_min_pages, info.memory_max_pages) == (2, 16)
    assert module.serialize() == precompile(data)  # the checked module is what gets compiled


@pytest.mark.parametrize("data, what", [
    (b"(module)", "magic"),
    (b"garbage!", "magic"),
    (b"\x7fELF\x02\x01\x01\x00", "magic"),
    (b"\0asm\x0d\x00\x01\x00", "version"),
    (b"\0asm\x02\x00\x00\x00", "version"),
])
def test_the_header_is_checked_first(data: bytes, what: str) -> None:
    assert rejected(data).what == what


def test_a_precompiled_module_is_never_accepted() -> None:
    assert "precompiled" in rejected(precompile(wasm(GOOD))).reason


def test_size_cap() -> None:
    assert rejected(wasm(GOOD), max_bytes=10).what == "size"


def test_truncated_and_invalid() -> None:
    data = wasm(GOOD)
    assert rejected(data[:-3]).what == "module"
    assert rejected(wasm('(module (func (export "_start") i32.const 1))')).what == "module"  # type error


def test_start_section() -> None:
    assert rejected(wasm('(module (memory (export "memory") 1) (func $s) (start $s) (func (export "_start")))')
                    ).what == "start"


@pytest.mark.parametrize("imported, what", [
    ('(import "env" "launch_missiles" (func))', "env.launch_missiles"),
    ('(import "wasi_snapshot_preview1" "not_a_wasi_call" (func))', "wasi_snapshot_preview1.not_a_wasi_call"),
    ('(import "wasi_snapshot_preview1" "fd_read" (global i32))', "wasi_snapshot_preview1.fd_read"),
])
def test_imports_outside_wasi_preview1_are_named(imported: str, what: str) -> None:
    problem = rejected(wasm(f'(module {imported} (memory (export "memory") 1) (func (export "_start")))'))
    assert problem.what == what and what in problem.reason


def test_an_imported_memory_is_refused() -> None:
    problem = rejected(wasm('(module (import "env" "memory" (memory 1)) (func (export "_start")))'))
    assert problem.what == "env.memory"


@pytest.mark.parametrize("wat, what", [
    ('(module (memory (export "memory") 1) (func (export "main")))', "_start"),
    ('(module (memory (export "memory") 1) (func (export "_initialize")))', "_start"),
    ('(module (memory (export "memory") 1) (func (export "_start") (param i32)))', "_start"),
    ('(module (memory 1) (func (export "_start")))', "memory"),
])
def test_exports(wat: str, what: str) -> None:
    assert rejected(wasm(wat)).what == what


def test_memory_over_the_cap_is_named() -> None:
    problem = rejected(wasm('(module (memory (export "memory") 2048) (func (export "_start")))'))
    assert problem.what == "memory" and "2048 pages" in problem.reason


# x86-64-v2, spelled out here rather than taken from runtimes.wasm: what every x86-64
# server since 2009 and gVisor's guest CPU offer.
X86_64_V2 = {"has_sse3", "has_ssse3", "has_sse41", "has_sse42", "has_popcnt", "has_cmpxchg16b"}


def test_modules_are_compiled_for_the_stated_cpu_baseline_not_the_host() -> None:
    """A .cwasm that enables a feature of the compiling host's CPU (AVX-VNNI here) is refused by
    wasmtime on a CPU without it: under gVisor, or on another worker host."""
    from runtimes.wasm import cpu_features

    assert cpu_features(precompile(wasm(GOOD))) <= X86_64_V2


def test_cpu_features_reads_what_an_artifact_enables() -> None:
    from runtimes.wasm import cpu_features

    config = wasmtime.Config()
    config.consume_fuel, config.epoch_interruption, config.wasm_threads = True, True, False
    config.target = "x86_64-unknown-linux-gnu"
    config.cranelift_flag_enable("x86-64-v3")
    artifact = wasmtime.Module(wasmtime.Engine(config), bytearray(wasm(GOOD))).serialize()
    assert {"has_avx2", "has_bmi2", "has_fma"} <= cpu_features(artifact)
    assert "has_avx512f" not in cpu_features(artifact)
