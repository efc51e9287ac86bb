"""The example agents shipped under images/: registered by `executor up`."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from executor.agents import service as agents
from executor.agents.records import AgentVersion
from executor.service import Services
from executor.storage import agents as agent_sql

log = logging.getLogger(__name__)

EXAMPLE_IMAGES = ("busybox", "wordcount")


@dataclass(frozen=True)
class Example:
    image_name: str
    registration: dict[str, Any]
    example_input: Any


def load_examples(images_dir: Path) -> list[Example]:
    """Every images/<name>/agent.json, with its input and output schema files beside it."""
    found = []
    for manifest in sorted(images_dir.glob("*/agent.json")):
        spec = json.loads(manifest.read_text())
        folder = manifest.parent
        registration = {
            "name": spec["name"],
            "kind": spec.get("kind", "container"),
            "image": spec["image"],
            "command": spec.get("command"),
            "description": spec.get("description"),
            "limits": spec.get("limits"),
            "input_schema": json.loads((folder / "input.schema.json").read_text()),
            "output_schema": json.loads((folder / "output.schema.json").read_text()),
        }
        found.append(Example(folder.name, registration, spec.get("example_input")))
    return found


async def register_examples(services: Services, examples: list[Example]) -> list[tuple[AgentVersion, Example]]:
    """Register each example agent unless an agent of that name exists."""
    registered = []
    for example in examples:
        agent = await agent_sql.get_by_name(services.db, example.registration["name"])
        if agent is None:
            agent = await agents.register(
                services.db, services.settings, services.resolve_image, "operator:bootstrap", example.registration
            )
            log.info("registered example agent %s (%s)", agent.name, agent.agent_id)
        registered.append((agent, example))
    return registered
