"""Wiring: the long-lived parts of one executor process, started and stopped in order."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from executor import faults
from executor.errors import DependencyUnavailable
from executor.executions.finish import Finisher
from executor.executions.service import Executions
from executor.executions.worker import Worker
from executor.queue.events import Events
from executor.queue.stream import JobQueue
from executor.ratelimit import RateLimiter
from executor.receipts import log as transparency_log
from executor.receipts.issuer import ReceiptIssuer
from executor.receipts.keys import Signer, parse_seed
from executor.receipts.service import Receipts
from executor.records.agents import AgentVersion
from executor.settings import Settings
from executor.storage.database import create_pool, migrate
from executor.webhooks.dispatcher import WebhookDispatcher
from runtimes import wasm
from runtimes.container import ContainerRuntime
from runtimes.engine import DockerEngine
from runtimes.images import build_images, content_tag
from runtimes.metering import choose_meter
from runtimes.pool import ContainerPool, PoolConfig

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: asyncpg.Pool
    redis: redis.Redis
    queue: JobQueue
    events: Events
    executions: Executions
    signer: Signer
    receipts: Receipts
    finisher: Finisher
    dispatcher: WebhookDispatcher
    engine: DockerEngine | None = None
    worker: Worker | None = None
    _head_task: asyncio.Task[None] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    async def resolve_image(self, reference: str) -> str | None:
        if self.engine is None:
            raise RuntimeError("resolving images needs a Docker engine in this process")
        return await self.engine.image_id(reference)

    async def engine_runtimes(self) -> set[str]:
        """The OCI runtimes registered with this process's engine (docker info)."""
        if self.engine is None:
            raise RuntimeError("listing OCI runtimes needs a Docker engine in this process")
        info = await self.engine.call_retrying(self.engine.api.info)
        return set(info.get("Runtimes") or {})

    async def check_dependencies(self) -> dict[str, bool]:
        async def postgres() -> bool:
            return await self.db.fetchval("SELECT 1") == 1

        async def docker() -> bool:
            return self.engine is not None and await self.engine.ping()

        checks = {"postgresql": postgres(), "redis": self.redis.ping()}
        if self.engine is not None:
            checks["docker"] = docker()
        results = await asyncio.gather(*(asyncio.wait_for(c, 2.0) for c in checks.values()), return_exceptions=True)
        return {name: result is True for name, result in zip(checks, results, strict=True)}

    async def bake_wasm_module(self, agent: AgentVersion, cwasm: bytes, module_sha256: str) -> str:
        """The per-version image of a WASM agent, FROM the runtime image (built here if missing)."""
        if self.engine is None:
            raise RuntimeError("baking images needs a Docker engine in this process")
        engine = self.engine
        (runtime,) = await asyncio.to_thread(build_images, engine.client, ["wasm"], progress=log.info)
        base = await engine.call(content_tag, engine.client, runtime)
        return await wasm.bake_image(engine, base, cwasm, tag=f"executor/agent-{agent.agent_id}:v{agent.version}",
                                     labels={"org.executor.module-sha256": module_sha256})

    def status(self) -> dict[str, Any]:
        """What this instance is doing: for operators (/v1/status, /metrics, `executor status`)."""
        pool = self.worker.runtime.pool if self.worker else None
        return {
            "instance": self.settings.resolved_instance_id,
            "worker": {"running": self.worker.running if self.worker else 0,
                       "concurrency": self.settings.worker_concurrency},
            "pool": pool.snapshot() if pool and pool.config.enabled else None,
        }

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._head_task:
            self._head_task.cancel()
            await asyncio.gather(self._head_task, return_exceptions=True)
        if self.worker:
            await self.worker.stop()
        await self.dispatcher.stop()
        await self.events.stop()
        await self.redis.aclose()
        await self.db.close()
        if self.engine:
            await self.engine.aclose()


async def start_services(settings: Settings, *, database_url: str, redis_url: str, run_worker: bool = True,
                         serve_api: bool = True) -> Services:
    """Connect, migrate, and start the worker half when asked. Without the API (`executor
    worker`) nothing in the process waits for an execution's events."""
    faults.arm(settings.fault_points)
    db = await create_pool(database_url)
    await migrate(db)
    client = redis.Redis.from_url(redis_url)
    await _wait_for_redis(client)
    queue = JobQueue(client)
    events = Events(client, waiters=serve_api)
    await events.start()
    signer = open_signer(settings)
    await signer.publish(db)
    finisher = Finisher(db, ReceiptIssuer(signer))
    dispatcher = WebhookDispatcher(db, settings)
    finisher.on_webhook = dispatcher.notify
    executions = Executions(db, queue, events, settings, finisher, RateLimiter(client))
    services = Services(settings, db, client, queue, events, executions, signer, Receipts(db, signer),
                        finisher, dispatcher)
    await dispatcher.start()
    services._head_task = asyncio.create_task(
        transparency_log.keep_signing_heads(db, signer, settings.log_head_interval_s), name="log-heads")
    # The API half uses the engine too (pinning an image at registration, baking WASM images).
    services.engine = DockerEngine(threads=settings.docker_threads)
    if run_worker:
        engine_info = await services.engine.call_retrying(services.engine.api.info)
        runtime = ContainerRuntime(services.engine, instance_id=settings.resolved_instance_id,
                                   meter=choose_meter(settings.metering, engine_info),
                                   default_oci_runtime=engine_info.get("DefaultRuntime"))
        runtime.pool = ContainerPool(runtime, PoolConfig(
            enabled=settings.pool_enabled, max_containers=settings.pool_max_containers,
            max_memory_mb=settings.pool_max_memory_mb, idle_s=settings.pool_idle_s,
            slots=settings.worker_concurrency,
        ))
        services.worker = Worker(db, queue, events, runtime, settings, finisher)
        await services.worker.start()
    return services


def open_signer(settings: Settings) -> Signer:
    """The signing key from EXECUTOR_SIGNING_KEY, else the key ring file (created 0600 if absent)."""
    if settings.signing_key:
        return Signer(seed=parse_seed(settings.signing_key, source="EXECUTOR_SIGNING_KEY"))
    return Signer(ring_path=settings.resolved_signing_key_file)


async def _wait_for_redis(client: redis.Redis, wait_s: float = 30.0) -> None:
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((RedisConnectionError, OSError)),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            stop=stop_after_delay(wait_s),
            before_sleep=lambda s: log.warning("waiting for Redis (attempt %d): %s", s.attempt_number, s.outcome.exception()),
            reraise=True,
        ):
            with attempt:
                await client.ping()
    except (RedisConnectionError, OSError) as exc:
        raise DependencyUnavailable(f"Redis did not answer within {wait_s:.0f} s: {exc}") from exc
