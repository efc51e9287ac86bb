"""Agents and their versions: registering, publishing, reading, moving, and a WASM agent's module."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import docker.errors

from executor.agents.versions import MOVES, check_may_manage, hourly, version_stats
from executor.egress.policy import parse_egress
from executor.errors import (
    Conflict,
    ImageNotFound,
    LimitExceeded,
    ModuleInvalid,
    NotFound,
    RequestInvalid,
    RuntimeUnavailable,
    VersionWithdrawn,
    WasmRuntimeUnavailable,
)
from executor.limits import check_runtime_floor, resolve_limits
from executor.pricing import parse_pricing
from executor.records.agents import AgentVersion
from executor.records.principals import Principal
from executor.schemas import check_schema, off_loop
from executor.settings import Settings
from executor.storage import agents as agent_sql
from runtimes import wasm
from runtimes.engine import DockerEngine
from runtimes.images import ImageBuildError, build_images, content_tag
from runtimes.wasm import memory_cap_bytes
from runtimes.wasm_module import ModuleRejected, check_module

log = logging.getLogger(__name__)

WASM_RUNTIME_IMAGE = "executor/wasm"


def _require(condition: bool, pointer: str, detail: str) -> None:
    if not condition:
        raise RequestInvalid(f"{pointer.lstrip('/')}: {detail}", errors=[{"pointer": pointer, "detail": detail}])


class Agents:
    """The agents of this deployment. The engine pins a version's image to its id, says which
    OCI runtimes exist, and holds the image baked from a WASM agent's module."""

    def __init__(self, db: asyncpg.Pool, settings: Settings, engine: DockerEngine) -> None:
        self.db = db
        self.settings = settings
        self.engine = engine
        # Told "*" after anything that changes which versions run (executor/mcp lists them as tools);
        # set by executor/service.py to Events.publish_tools_changed.
        self.on_change: Callable[[str], Awaitable[None]] | None = None

    async def _changed(self) -> None:
        if self.on_change is not None:
            await self.on_change("*")

    async def register(self, owner: str, body: Any) -> AgentVersion:
        """Pin the image of a registration to its id, store version 1. The body's shape was checked
        against the contract's RegisterAgent (executor/api/contract/agents.py)."""
        name, kind = body["name"], body.get("kind", "container")
        version = await self.parse_version({k: v for k, v in body.items() if k not in ("name", "kind")}, kind)
        try:
            registered = await agent_sql.insert_agent(self.db, name=name, kind=kind, owner=owner, version=version)
        except asyncpg.UniqueViolationError:
            raise Conflict(f"an agent named {name!r} already exists") from None
        await self._changed()
        return registered

    async def publish(self, caller: Principal, agent_id: str, body: Any) -> AgentVersion:
        """A new immutable version with the agent's kind; the fields of a registration but name and kind."""
        current = await self.get(agent_id)
        check_may_manage(caller, current)
        fields = await self.parse_version(body, current.kind)
        created = await agent_sql.insert_version(self.db, current.agent_id, fields)
        if created is None:
            raise NotFound(f"no agent {agent_id!r}")
        await self._changed()
        return created

    async def parse_version(self, body: Any, kind: str) -> dict[str, Any]:
        """The fields of one version (a registration's, or a new version's), with the image pinned
        to its id; a WASM version's image comes with its module, later. The shape was checked against
        the contract; what is left here needs the agent's kind, the operator's settings or the engine."""
        settings = self.settings
        if kind == "wasm":
            # The image comes from the uploaded module (PUT /v1/agents/{id}/module).
            _require("image" not in body and "command" not in body, "/image", "a WASM agent has no image or command")
            image, command = WASM_RUNTIME_IMAGE, None
            fuel = body.get("fuel", settings.wasm_default_fuel)
            if fuel > settings.wasm_max_fuel:
                raise LimitExceeded(f"fuel {fuel} is above the maximum of {settings.wasm_max_fuel}",
                                    errors=[{"pointer": "/fuel", "detail": "above the operator's maximum"}])
        else:
            _require("fuel" not in body, "/fuel", "only WASM agents take fuel")
            fuel = None
            image = body.get("image")
            _require(image is not None, "/image", "an image reference is required")
            command = body.get("command")
        description = body.get("description")
        for field in ("input_schema", "output_schema"):
            await off_loop(check_schema, body[field], field=field)  # up to seconds for a large schema
        limits = resolve_limits(body.get("limits"), settings.default_limits, settings.max_limits)
        pool = _pool_bounds(body.get("pool"), settings)
        pricing = parse_pricing(body.get("pricing"))
        runtime = await self._runtime(body.get("runtime"))
        check_runtime_floor(limits, runtime or settings.oci_runtime)
        _require(kind != "wasm" or body.get("egress") is None, "/egress",
                 "a WASM agent has no sockets: egress is for container agents")
        egress = parse_egress(body.get("egress"), body.get("egress_limits"),
                              allowed_hosts=settings.egress_allowed_hosts, max_time_s=limits.timeout_s)

        if kind == "wasm":
            digest = None  # until the module is uploaded
        else:
            digest = await self.engine.image_id(image)
            if digest is None:
                raise ImageNotFound(f"image {image!r} is not on the engine; build or load it first "
                                    "(no registry is used)")
        return {
            "image": image, "image_digest": digest, "command": command, "description": description,
            "input_schema": body["input_schema"], "output_schema": body["output_schema"],
            "limits": limits.to_dict(), "pool": pool, "fuel": fuel,
            "pricing": pricing.to_dict() if pricing else None, "runtime": runtime,
            "egress": egress.to_dict() if egress else None,
        }

    async def _runtime(self, raw: Any) -> str | None:
        """The OCI runtime a version asks for: one the operator allows (EXECUTOR_OCI_RUNTIMES) and
        the engine has. None: the operator's default, whatever it is when the task runs."""
        if raw is None:
            return None
        allowed = self.settings.allowed_oci_runtimes
        if raw not in allowed:
            detail = f"allowed here: {', '.join(allowed)}" if allowed else "this operator lets no agent choose"
            raise RuntimeUnavailable(f"runtime {raw!r} is not allowed ({detail})",
                                     errors=[{"pointer": "/runtime", "detail": detail}])
        if raw not in await self._engine_runtimes():
            detail = "the Docker engine has no such runtime registered"
            raise RuntimeUnavailable(f"runtime {raw!r}: {detail}", errors=[{"pointer": "/runtime", "detail": detail}])
        return str(raw)

    async def _engine_runtimes(self) -> set[str]:
        """The OCI runtimes registered with the engine (docker info)."""
        info = await self.engine.call_retrying(self.engine.api.info)
        return set(info.get("Runtimes") or {})

    async def get(self, agent_id: str, version: int | None = None) -> AgentVersion:
        """A version (the newest unless one is named), or NotFound."""
        found = await agent_sql.get_version(self.db, parse_id(agent_id), version)
        if found is None:
            raise NotFound(f"no agent {agent_id!r}" + (f" version {version}" if version else ""))
        return found

    async def by_name(self, name: str) -> AgentVersion | None:
        return await agent_sql.get_by_name(self.db, name)

    async def runnable(self, *, agent_ids: list[uuid.UUID] | None = None,
                       owner: str | None = None) -> list[AgentVersion]:
        """What for_run would pin for each agent (of `agent_ids`, of `owner`; None: all), by name;
        agents with no runnable version are left out."""
        return await agent_sql.runnable_versions(self.db, agent_ids=agent_ids, owner=owner)

    async def list_page(self, *, limit: int, cursor: str | None) -> tuple[list[AgentVersion], str | None]:
        """Agents by name (each at its latest version); the cursor is the last name of the page."""
        found = await agent_sql.list_latest(self.db, limit=limit, after_name=cursor)
        return found, found[-1].name if len(found) == limit else None

    async def versions_page(self, agent_id: str, *, limit: int,
                            cursor: str | None) -> tuple[list[AgentVersion], str | None]:
        """A page of an agent's versions, oldest first, or NotFound; the cursor is the last version's number."""
        agent = await self.get(agent_id)
        after = int(cursor) if cursor is not None and cursor.isascii() and cursor.isdigit() and len(cursor) < 10 \
            else None
        if cursor is not None and after is None:
            raise RequestInvalid("bad cursor", errors=[{"pointer": "?cursor", "detail": "not one of ours"}])
        found = await agent_sql.list_versions(self.db, agent.agent_id, after=after or 0, limit=limit)
        return found, str(found[-1].version) if len(found) == limit else None

    async def move(self, caller: Principal, agent_id: str, version: int, status: str) -> AgentVersion:
        """Deprecate or withdraw a version (moving to where it already is is a no-op)."""
        current = await self.get(agent_id, version)
        check_may_manage(caller, current)
        if current.status == status:
            return current
        moved = await agent_sql.set_status(self.db, current.agent_id, version, status, MOVES[status])
        if moved is None:
            raise Conflict(f"version {version} is {current.status}: it cannot become {status}")
        await self._changed()
        return moved

    async def for_run(self, agent_id: Any, version: int | None) -> AgentVersion:
        """The version an execution will pin: the one asked for, unless withdrawn; else the
        newest published version with its image (then the newest deprecated one)."""
        if version is not None:
            found = await self.get(agent_id, version)
            if found.status == "withdrawn":
                raise VersionWithdrawn(f"agent {found.agent_id} version {version} is withdrawn")
            return found
        # One query on the hot path; the others only say why nothing can run.
        runnable = await agent_sql.runnable_version(self.db, parse_id(agent_id))
        if runnable is not None:
            return runnable
        latest = await self.get(agent_id)
        if all(v.status == "withdrawn" for v in await agent_sql.list_versions(self.db, latest.agent_id)):
            raise VersionWithdrawn(f"every version of agent {latest.agent_id} is withdrawn")
        return latest  # a WASM agent without its module yet: submission says so

    async def stats(self, agent_id: str) -> dict[str, Any]:
        """Per version: executions, how they ended, success rate, p50/p95 durations; and the
        agent's executions per hour over the last 24 hours."""
        agent = await self.get(agent_id)
        rows = await agent_sql.version_stats(self.db, agent.agent_id)
        hours = await agent_sql.hourly_executions(self.db, agent.agent_id)
        return {"agent_id": str(agent.agent_id), "name": agent.name, "versions": [version_stats(row) for row in rows],
                "hourly": [hourly(row) for row in hours]}

    async def upload_module(self, agent_id: str, data: bytes, version: int | None = None) -> AgentVersion:
        """Check an uploaded .wasm, compile it once, bake it into the version's image (the newest
        version unless one is given). Nothing is stored unless every check passes; a version's
        module is set once."""
        agent = await self.get(agent_id, version)
        if agent.kind != "wasm":
            raise Conflict(f"agent {agent_id} is a {agent.kind} agent; only WASM agents take a module")
        if agent.module_sha256 is not None:
            raise Conflict(f"version {agent.version} already has its module ({agent.module_sha256}); "
                           "versions are immutable")
        try:
            info, module = await asyncio.to_thread(
                check_module, data, max_bytes=self.settings.max_module_bytes,
                max_memory_bytes=memory_cap_bytes(agent.limits.memory_mb),
            )
            cwasm = bytes(await asyncio.to_thread(module.serialize))
        except ModuleRejected as exc:
            raise ModuleInvalid(exc.reason, errors=[{"pointer": exc.what, "detail": exc.reason}]) from None
        image_id = await self._bake(agent, cwasm, info.sha256)
        updated = await agent_sql.set_module(self.db, agent.agent_id, agent.version, image_digest=image_id,
                                             module_sha256=info.sha256)
        if updated is None:  # a concurrent upload won
            raise Conflict(f"version {agent.version} already has its module; versions are immutable")
        await self._changed()
        return updated

    async def _bake(self, agent: AgentVersion, cwasm: bytes, module_sha256: str) -> str:
        """The per-version image of a WASM agent, FROM the runtime image (built here if missing)."""
        engine = self.engine
        try:
            (runtime,) = await asyncio.to_thread(build_images, engine.client, ["wasm"], progress=log.info,
                                                 images_dir=self.settings.images_dir)
        except (ImageBuildError, OSError, docker.errors.DockerException) as exc:
            # A folder without images/wasm, or a build the engine refused: the deployment's fault.
            log.error("the WASM runtime image could not be built: %s", exc, exc_info=True)
            raise WasmRuntimeUnavailable("the WASM runtime image cannot be built on this deployment "
                                         "(EXECUTOR_IMAGES_DIR needs images/wasm); the operator was told") from None
        base = await engine.call(content_tag, engine.client, runtime)
        return await wasm.bake_image(engine, base, cwasm, tag=f"executor/agent-{agent.agent_id}:v{agent.version}",
                                     labels={"org.executor.module-sha256": module_sha256})


def _pool_bounds(raw: Any, settings: Settings) -> dict[str, int] | None:
    """{"min", "max"} pre-started containers for this agent (each defaulted from the operator's
    settings, so only here can they be compared), within the operator's cap."""
    if raw is None:
        return None
    bounds = {"min": raw.get("min", settings.pool_default_min), "max": raw.get("max", settings.pool_default_max)}
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
