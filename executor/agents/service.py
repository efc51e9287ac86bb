"""Registering and reading agents."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import asyncpg

from executor.errors import (
    Conflict,
    ImageNotFound,
    LimitExceeded,
    ModuleInvalid,
    NotFound,
    RequestInvalid,
    RuntimeUnavailable,
)
from executor.limits import resolve_limits
from executor.pricing import parse_pricing
from executor.records.agents import AgentVersion
from executor.schemas import check_schema, off_loop
from executor.settings import Settings
from executor.storage import agents as agent_sql
from runtimes.wasm import memory_cap_bytes
from runtimes.wasm_module import ModuleRejected, check_module

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
_VERSION_FIELDS = {"image", "command", "input_schema", "output_schema", "limits", "pool", "description", "fuel",
                   "pricing", "runtime"}
WASM_RUNTIME_IMAGE = "executor/wasm"

ImageResolver = Callable[[str], Awaitable[str | None]]
RuntimeLister = Callable[[], Awaitable[Collection[str]]]  # the OCI runtimes the engine has (docker info)


def _require(condition: bool, pointer: str, detail: str) -> None:
    if not condition:
        raise RequestInvalid(f"{pointer.lstrip('/')}: {detail}", errors=[{"pointer": pointer, "detail": detail}])


async def register(
    db: asyncpg.Pool, settings: Settings, resolve_image: ImageResolver, owner: str, body: Any,
    engine_runtimes: RuntimeLister | None = None,
) -> AgentVersion:
    """Validate a registration, pin the image to its id, store version 1."""
    _require(isinstance(body, dict), "", "the body must be a JSON object")
    name = body.get("name")
    _require(isinstance(name, str) and bool(_NAME.match(name)), "/name", "lowercase letters, digits, . _ -; 1-100 chars")
    kind = body.get("kind", "container")
    _require(kind in ("container", "wasm"), "/kind", "'container' or 'wasm'")
    version = await parse_version({k: v for k, v in body.items() if k not in ("name", "kind")}, kind, settings,
                                  resolve_image, engine_runtimes)
    try:
        return await agent_sql.insert_agent(db, name=name, kind=kind, owner=owner, version=version)
    except asyncpg.UniqueViolationError:
        raise Conflict(f"an agent named {name!r} already exists") from None


async def parse_version(body: Any, kind: str, settings: Settings, resolve_image: ImageResolver,
                        engine_runtimes: RuntimeLister | None = None) -> dict[str, Any]:
    """The fields of one version (a registration's, or a new version's), checked, with the
    image pinned to its id; a WASM version's image comes with its module, later."""
    _require(isinstance(body, dict), "", "the body must be a JSON object")
    unknown = sorted(set(body) - _VERSION_FIELDS)
    _require(not unknown, f"/{unknown[0]}" if unknown else "", "unknown field")
    if kind == "wasm":
        # The image comes from the uploaded module (PUT /v1/agents/{id}/module).
        _require("image" not in body and "command" not in body, "/image", "a WASM agent has no image or command")
        image, command = WASM_RUNTIME_IMAGE, None
        fuel = body.get("fuel", settings.wasm_default_fuel)
        _require(isinstance(fuel, int) and not isinstance(fuel, bool) and fuel > 0, "/fuel", "a positive integer")
        if fuel > settings.wasm_max_fuel:
            raise LimitExceeded(f"fuel {fuel} is above the maximum of {settings.wasm_max_fuel}",
                                errors=[{"pointer": "/fuel", "detail": "above the operator's maximum"}])
    else:
        _require("fuel" not in body, "/fuel", "only WASM agents take fuel")
        fuel = None
        image = body.get("image")
        _require(isinstance(image, str) and 0 < len(image) <= 255, "/image", "an image reference is required")
        command = body.get("command")
        _require(
            command is None or (isinstance(command, list) and all(isinstance(c, str) for c in command) and command),
            "/command", "a non-empty list of strings, or null for the image's own entrypoint",
        )
    description = body.get("description")
    _require(description is None or isinstance(description, str), "/description", "must be a string")
    for field in ("input_schema", "output_schema"):
        _require(field in body, f"/{field}", "required")
        await off_loop(check_schema, body[field], field=field)  # up to seconds for a large schema
    limits = resolve_limits(body.get("limits"), settings.default_limits, settings.max_limits)
    pool = _pool_bounds(body.get("pool"), settings)
    pricing = parse_pricing(body.get("pricing"))
    runtime = await _runtime(body.get("runtime"), settings, engine_runtimes)

    if kind == "wasm":
        digest = None  # until the module is uploaded
    else:
        digest = await resolve_image(image)
        if digest is None:
            raise ImageNotFound(f"image {image!r} is not on the engine; build or load it first (no registry is used)")
    return {
        "image": image, "image_digest": digest, "command": command, "description": description,
        "input_schema": body["input_schema"], "output_schema": body["output_schema"],
        "limits": limits.to_dict(), "pool": pool, "fuel": fuel,
        "pricing": pricing.to_dict() if pricing else None, "runtime": runtime,
    }


async def _runtime(raw: Any, settings: Settings, engine_runtimes: RuntimeLister | None) -> str | None:
    """The OCI runtime a version asks for: one the operator allows (EXECUTOR_OCI_RUNTIMES) and
    the engine has. None: the operator's default, whatever it is when the task runs."""
    if raw is None:
        return None
    _require(isinstance(raw, str), "/runtime", "the name of an OCI runtime, or null for the operator's default")
    allowed = settings.allowed_oci_runtimes
    if raw not in allowed:
        detail = f"allowed here: {', '.join(allowed)}" if allowed else "this operator lets no agent choose"
        raise RuntimeUnavailable(f"runtime {raw!r} is not allowed ({detail})",
                                 errors=[{"pointer": "/runtime", "detail": detail}])
    if engine_runtimes is not None and raw not in await engine_runtimes():
        detail = "the Docker engine has no such runtime registered"
        raise RuntimeUnavailable(f"runtime {raw!r}: {detail}", errors=[{"pointer": "/runtime", "detail": detail}])
    return raw


def _pool_bounds(raw: Any, settings: Settings) -> dict[str, int] | None:
    """{"min", "max"} pre-started containers for this agent, within the operator's cap."""
    if raw is None:
        return None
    _require(isinstance(raw, dict) and set(raw) <= {"min", "max"}, "/pool", "an object with min and/or max")
    bounds = {"min": raw.get("min", settings.pool_default_min), "max": raw.get("max", settings.pool_default_max)}
    for name, value in bounds.items():
        _require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, f"/pool/{name}",
                 "a non-negative integer")
    _require(bounds["min"] <= bounds["max"], "/pool", "min must not exceed max")
    if bounds["max"] > settings.pool_max_containers:
        raise LimitExceeded(f"pool max {bounds['max']} is above the operator's cap of {settings.pool_max_containers}",
                            errors=[{"pointer": "/pool/max", "detail": "above the operator's cap"}])
    return bounds


def parse_id(agent_id: Any) -> uuid.UUID:
    """An agent id from a request; a malformed one is an agent that does not exist."""
    try:
        return uuid.UUID(agent_id)
    except (ValueError, TypeError, AttributeError):
        raise NotFound(f"no agent {agent_id!r}") from None


async def get(db: asyncpg.Pool, agent_id: str, version: int | None = None) -> AgentVersion:
    found = await agent_sql.get_version(db, parse_id(agent_id), version)
    if found is None:
        raise NotFound(f"no agent {agent_id!r}" + (f" version {version}" if version else ""))
    return found


async def list_page(db: asyncpg.Pool, *, limit: int, cursor: str | None) -> tuple[list[AgentVersion], str | None]:
    """Agents by name (each at its latest version); the cursor is the last name of the page."""
    found = await agent_sql.list_latest(db, limit=limit, after_name=cursor)
    return found, found[-1].name if len(found) == limit else None


ModuleBaker = Callable[[AgentVersion, bytes, str], Awaitable[str]]


async def upload_module(db: asyncpg.Pool, settings: Settings, bake: ModuleBaker, agent_id: str,
                        data: bytes, version: int | None = None) -> AgentVersion:
    """Check an uploaded .wasm, compile it once, bake it into the version's image (the newest
    version unless one is given). Nothing is stored unless every check passes; a version's
    module is set once."""
    agent = await get(db, agent_id, version)
    if agent.kind != "wasm":
        raise Conflict(f"agent {agent_id} is a {agent.kind} agent; only WASM agents take a module")
    if agent.module_sha256 is not None:
        raise Conflict(f"version {agent.version} already has its module ({agent.module_sha256}); versions are immutable")
    try:
        info, module = await asyncio.to_thread(
            check_module, data, max_bytes=settings.max_module_bytes,
            max_memory_bytes=memory_cap_bytes(agent.limits.memory_mb),
        )
        cwasm = await asyncio.to_thread(module.serialize)
    except ModuleRejected as exc:
        raise ModuleInvalid(exc.reason, errors=[{"pointer": exc.what, "detail": exc.reason}]) from None
    image_id = await bake(agent, cwasm, info.sha256)
    updated = await agent_sql.set_module(db, agent.agent_id, agent.version, image_digest=image_id,
                                         module_sha256=info.sha256)
    if updated is None:  # a concurrent upload won
        raise Conflict(f"version {agent.version} already has its module; versions are immutable")
    return updated
