"""Checking an uploaded WebAssembly module before anything of it is stored.

In this order, each failure naming what is wrong: the size cap; the magic and
version (first: wasmtime-py would parse anything else as WAT text); a walk of
the raw sections (no start section: it would run code at instantiation); the
engine's own validation; imports only from WASI preview 1, functions only;
exports `_start: () -> ()` and `memory`; the declared memory within the cap.
Nothing here ever deserializes uploaded bytes: a precompiled `.cwasm` fails
the magic check.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import wasmtime

from runtimes.wasm import engine

MAGIC = b"\0asm"
CORE_VERSION = b"\x01\x00\x00\x00"
PAGE_BYTES = 64 * 1024
START_SECTION = 8

# Every function of wasi_snapshot_preview1: a guest gets no preopened directory,
# no socket and an empty environment, so these reach nothing outside it.
WASI_PREVIEW1 = frozenset([
    "args_get", "args_sizes_get", "environ_get", "environ_sizes_get", "clock_res_get", "clock_time_get",
    "fd_advise", "fd_allocate", "fd_close", "fd_datasync", "fd_fdstat_get", "fd_fdstat_set_flags",
    "fd_fdstat_set_rights", "fd_filestat_get", "fd_filestat_set_size", "fd_filestat_set_times", "fd_pread",
    "fd_prestat_get", "fd_prestat_dir_name", "fd_pwrite", "fd_read", "fd_readdir", "fd_renumber", "fd_seek",
    "fd_sync", "fd_tell", "fd_write", "path_create_directory", "path_filestat_get", "path_filestat_set_times",
    "path_link", "path_open", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
    "path_unlink_file", "poll_oneoff", "proc_exit", "proc_raise", "sched_yield", "random_get", "sock_accept",
    "sock_recv", "sock_send", "sock_shutdown",
])


class ModuleRejected(Exception):
    """Why an upload is refused; `what` names the offending import, export or limit."""

    def __init__(self, reason: str, what: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.what = what


@dataclass(frozen=True)
class ModuleInfo:
    sha256: str
    size: int
    imports: tuple[str, ...]  # "wasi_snapshot_preview1.fd_read", …
    memory_min_pages: int
    memory_max_pages: int | None


def check_module(data: bytes, *, max_bytes: int, max_memory_bytes: int,
                 compiler: wasmtime.Engine | None = None) -> tuple[ModuleInfo, wasmtime.Module]:
    """The module's facts and its compiled form, or ModuleRejected. CPU-heavy: call it off the event loop."""
    if len(data) > max_bytes:
        raise ModuleRejected(f"the module is {len(data)} bytes, over the cap of {max_bytes}", "size")
    _check_header(data)
    _walk_sections(data)
    compiler = compiler or engine()
    try:
        # A bytearray, never parsed as WAT text (bytes not starting with a NUL would be): wasmtime-py's
        # annotation (str | bytes) does not list it.
        wasmtime.Module.validate(compiler, bytearray(data))
        module = wasmtime.Module(compiler, bytearray(data))  # type: ignore[arg-type]
    except wasmtime.WasmtimeError as exc:
        raise ModuleRejected(f"invalid module: {str(exc).splitlines()[0]}", "module") from None

    imports = []
    for imported in module.imports:
        name = f"{imported.module}.{imported.name}"
        if imported.module != "wasi_snapshot_preview1" or imported.name not in WASI_PREVIEW1 \
                or not isinstance(imported.type, wasmtime.FuncType):
            raise ModuleRejected(f"import not allowed: {name} ({type(imported.type).__name__}); only WASI "
                                 "preview 1 functions are", name)
        imports.append(name)

    exports = {exported.name: exported.type for exported in module.exports}
    start = exports.get("_start")
    if not isinstance(start, wasmtime.FuncType) or list(start.params) or list(start.results):
        hint = " (`_initialize` means a reactor)" if "_initialize" in exports else ""
        raise ModuleRejected(f"no `_start: () -> ()` export: not a WASI command{hint}", "_start")
    memory = exports.get("memory")
    if not isinstance(memory, wasmtime.MemoryType):
        raise ModuleRejected("no exported `memory`", "memory")
    if memory.is_64 or memory.is_shared:
        raise ModuleRejected("the memory is 64-bit or shared; neither is supported", "memory")
    if memory.limits.min * PAGE_BYTES > max_memory_bytes:
        raise ModuleRejected(f"initial memory {memory.limits.min} pages ({memory.limits.min * PAGE_BYTES} bytes) "
                             f"is over the cap of {max_memory_bytes} bytes", "memory")
    info = ModuleInfo(hashlib.sha256(data).hexdigest(), len(data), tuple(imports), memory.limits.min,
                      memory.limits.max)
    return info, module


def _check_header(data: bytes) -> None:
    if not data.startswith(MAGIC):
        hint = ""
        if data.startswith(b"\x7fELF"):
            hint = " (an ELF file: precompiled modules are never accepted)"
        elif data.lstrip()[:1] == b"(":
            hint = " (WAT text: upload the binary module)"
        raise ModuleRejected("not a WebAssembly binary: bad magic" + hint, "magic")
    if data[4:8] != CORE_VERSION:
        kind = "a component (WASI preview 2), not a core module" if data[6:8] == b"\x01\x00" else \
            f"unsupported version {data[4:8].hex()}"
        raise ModuleRejected(f"unsupported wasm binary: {kind}", "version")


def _walk_sections(data: bytes) -> None:
    """Section ids and sizes only; wasmtime-py does not expose start sections."""
    offset = 8
    while offset < len(data):
        section = data[offset]
        size, offset = _leb128(data, offset + 1)
        if offset + size > len(data):
            raise ModuleRejected(f"section {section} runs past the end of the file", "module")
        if section == START_SECTION:
            raise ModuleRejected("the module has a start section (it runs code at instantiation)", "start")
        offset += size


def _leb128(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(5):
        if offset >= len(data):
            break
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
    raise ModuleRejected("a section header is truncated or malformed", "module")
