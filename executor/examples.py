"""The example agents shipped under images/: registered by `executor up`."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

from executor.agents.service import Agents
from executor.records.agents import AgentVersion

log = logging.getLogger(__name__)

EXAMPLE_IMAGES = ("busybox", "wordcount", "stats-python", "wasm")


@dataclass(frozen=True)
class Example:
    image_name: str
    registration: dict[str, Any]
    example_input: Any
    module_source: Path | None = None  # WASM examples: .wat, or .c built with clang --target=wasm32-wasi


def load_examples(images_dir: Path) -> list[Example]:
    """Every images/<name>/agent.json, with its input and output schema files beside it."""
    found = []
    for manifest in sorted(images_dir.glob("*/agent.json")):
        spec = json.loads(manifest.read_text())
        folder = manifest.parent
        registration = {
            "name": spec["name"],
            "kind": spec.get("kind", "container"),
            "description": spec.get("description"),
            "limits": spec.get("limits"),
            "input_schema": json.loads((folder / "input.schema.json").read_text()),
            "output_schema": json.loads((folder / "output.schema.json").read_text()),
        }
        source = None
        if registration["kind"] == "wasm":
            registration["fuel"] = spec["fuel"]
            source = folder / next(iter(spec["module"].values()))
        else:
            registration.update(image=spec["image"], command=spec.get("command"))
        found.append(Example(folder.name, registration, spec.get("example_input"), source))
    return found


def module_bytes(source: Path) -> bytes:
    """The binary module of a WASM example, from its text or its C source."""
    if source.suffix == ".wat":
        return bytes(wasmtime.wat2wasm(source.read_text()))
    if shutil.which("clang") is None:
        raise FileNotFoundError("clang not found (install Debian's clang lld wasi-libc libclang-rt-14-dev-wasm32)")
    with tempfile.TemporaryDirectory(prefix="executor-example-") as build:
        output = Path(build) / "agent.wasm"
        subprocess.run(["clang", "--target=wasm32-wasi", "-O2", "-s", "-o", str(output), str(source)],
                       check=True, capture_output=True)
        return output.read_bytes()


async def register_examples(agents: Agents, examples: list[Example]) -> list[tuple[AgentVersion, Example]]:
    """Register each example agent unless an agent of that name exists (WASM ones with their module)."""
    registered = []
    for example in examples:
        agent = await agents.by_name(example.registration["name"])
        if agent is None:
            agent = await agents.register("operator:bootstrap", example.registration)
            log.info("registered example agent %s (%s)", agent.name, agent.agent_id)
        if example.module_source is not None and agent.module_sha256 is None:
            try:
                data = await asyncio.to_thread(module_bytes, example.module_source)
            except (FileNotFoundError, subprocess.CalledProcessError) as exc:
                log.warning("example %s left without its module: %s", agent.name, exc)
                continue
            agent = await agents.upload_module(str(agent.agent_id), data)
        registered.append((agent, example))
    return registered
