"""Wiring: the long-lived parts of one executor process, started and stopped in order.

Every domain service is built here once, with what it needs handed to it; the API reaches
them through typed keys of its application (executor/api/keys.py)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from executor import faults
from executor.agents.service import Agents
from executor.egress.gateway import EgressGateway
from executor.egress.policy import host_allowed
from executor.egress.sockets import GatewaySockets
from executor.entitlements.service import Entitlements
from executor.errors import DependencyUnavailable
from executor.executions.finish import Finisher
from executor.executions.retention import BodyRetention
from executor.executions.service import Executions
from executor.executions.worker import Worker
from executor.images.service import Images
from executor.mcp.server import McpEndpoint
from executor.observability.metrics import Metrics
from executor.queue.classes import JobQueues
from executor.queue.events import Events
from executor.ratelimit import RateLimiter
from executor.receipts import log as transparency_log
from executor.receipts.issuer import ReceiptIssuer
from executor.receipts.keys import Signer, parse_seed
from executor.receipts.service import Receipts
from executor.replays import Replays
from executor.secrets.service import Secrets, open_key_ring
from executor.settings import Settings
from executor.storage.database import create_pool, migrate
from executor.tokens import Tokens
from executor.webhooks.dispatcher import WebhookDispatcher
from executor.webhooks.endpoints import WebhookEndpoints
from runtimes.base import TaskSpec
from runtimes.container import ContainerRuntime
from runtimes.engine import DockerEngine
from runtimes.launcher import ContainerLauncher
from runtimes.live import LiveContainer, RunningTasks
from runtimes.metering import choose_meter
from runtimes.pool import ContainerPool
from runtimes.pool_shelves import PoolConfig

log = logging.getLogger(__name__)

_REDIS_CONNECTION_WAIT_S = 10.0  # a Redis call waits this long for a free connection, then fails


@dataclass
class Services:
    """One process: its connections, its domain services (what the API serves), and the
    worker half when it runs one."""

    settings: Settings
    db: asyncpg.Pool
    redis: redis.Redis
    engine: DockerEngine
    queue: JobQueues
    events: Events
    signer: Signer
    finisher: Finisher
    dispatcher: WebhookDispatcher
    tokens: Tokens
    agents: Agents
    entitlements: Entitlements
    executions: Executions
    images: Images
    receipts: Receipts
    webhook_endpoints: WebhookEndpoints
    replays: Replays  # Idempotency-Key on the creating POSTs, with its sweep of expired answers
    secrets: Secrets  # agents' secrets, sealed; revealed to the egress gateway alone (docs/secrets.md)
    metrics: Metrics  # this process's counters and histograms (/metrics reads its gauges from the others)
    worker: Worker | None = None
    egress: EgressGateway | None = None  # the worker's egress gateway (docs/egress.md)
    retention: BodyRetention | None = None  # EXECUTOR_RETENTION_S's sweep: run by every process, idempotent
    mcp: McpEndpoint | None = None  # the MCP endpoint's listener, when EXECUTOR_MCP_PORT is set (docs/mcp.md)
    _head_task: asyncio.Task[None] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    async def check_dependencies(self) -> dict[str, bool]:
        """Whether PostgreSQL, Redis and the engine each answer within 2 s (for /readyz)."""
        async def postgres() -> bool:
            return bool(await self.db.fetchval("SELECT 1") == 1)

        checks = {"postgresql": postgres(), "redis": self.redis.ping(), "docker": self.engine.ping()}
        results = await asyncio.gather(*(asyncio.wait_for(c, 2.0) for c in checks.values()), return_exceptions=True)
        return {name: result is True for name, result in zip(checks, results, strict=True)}

    def status(self) -> dict[str, Any]:
        """What this instance is doing: for operators (/v1/status, /metrics, `executor status`)."""
        pool = self.worker.pool if self.worker else None
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
        if self.mcp:
            await self.mcp.stop()
        if self._head_task:
            self._head_task.cancel()
            await asyncio.gather(self._head_task, return_exceptions=True)
        if self.retention:
            await self.retention.stop()
        await self.replays.stop()
        if self.worker:
            await self.worker.stop()
        if self.egress:
            await self.egress.close()
        await self.dispatcher.stop()
        await self.events.stop()
        await self.redis.aclose()
        await self.db.close()
        await self.engine.aclose()


async def start_services(settings: Settings, *, database_url: str, redis_url: str, run_worker: bool = True,
                         serve_api: bool = True) -> Services:
    """Connect, migrate, and start the worker half when asked. Without the API (`executor
    worker`) nothing in the process waits for an execution's events."""
    faults.arm(settings.fault_points)
    secret_keys = open_key_ring(settings)  # a bad key refuses the start, before connecting
    metrics = Metrics(instance_id=settings.resolved_instance_id)
    db = await create_pool(database_url)
    await migrate(db)
    client = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
        redis_url, max_connections=settings.redis_max_connections, timeout=_REDIS_CONNECTION_WAIT_S))
    await _wait_for_redis(client)
    queue = JobQueues(client)
    events = Events(client, waiters=serve_api)
    await events.start()
    signer = open_signer(settings)
    await signer.publish(db)
    finisher = Finisher(db, ReceiptIssuer(signer), metrics=metrics)
    dispatcher = WebhookDispatcher(db, settings, metrics=metrics)
    finisher.on_webhook = dispatcher.notify
    # The API half uses the engine too (pinning an image at registration, baking WASM images).
    engine = DockerEngine(threads=settings.docker_threads)
    agents = Agents(db, settings, engine)
    entitlements = Entitlements(db, agents)
    # Which agents callers may run changed: the MCP sessions of every API process hear of it.
    agents.on_change = entitlements.on_change = events.publish_tools_changed
    executions = Executions(db, queue, events, settings, finisher, RateLimiter(client),
                            agents=agents, entitlements=entitlements, metrics=metrics)
    services = Services(
        settings, db, client, engine, queue, events, signer, finisher, dispatcher,
        tokens=Tokens(db), agents=agents, entitlements=entitlements, executions=executions,
        images=Images(db, settings, engine), receipts=Receipts(db, signer),
        webhook_endpoints=WebhookEndpoints(db, settings), replays=Replays(db, settings.idempotency_ttl_s),
        secrets=Secrets(db, secret_keys, agents), metrics=metrics,
    )
    await dispatcher.start()
    services._head_task = asyncio.create_task(
        transparency_log.keep_signing_heads(db, signer, settings.log_head_interval_s), name="log-heads")
    services.retention = BodyRetention(db, settings.retention_s, metrics=metrics)
    services.retention.start()  # nothing runs when the retention is 0
    services.replays.start()
    if serve_api and settings.mcp_port:
        services.mcp = McpEndpoint(settings, tokens=services.tokens, agents=agents, entitlements=entitlements,
                                   executions=executions, events=events)
        await services.mcp.start()
    if run_worker:
        engine_info = await services.engine.call_retrying(services.engine.api.info)
        services.egress = EgressGateway(egress_root(settings), ca_file=settings.egress_ca_file,
                                        reveal=services.secrets.reveal,
                                        host_allowed=partial(host_allowed, allowed_hosts=settings.egress_allowed_hosts))
        await services.egress.start()
        launcher = ContainerLauncher(services.engine, instance_id=settings.resolved_instance_id,
                                     meter=choose_meter(settings.metering, engine_info),
                                     egress=GatewaySockets(services.egress))
        running = RunningTasks()  # the runtime counts them, the pool reads them
        # The pool launches only to refill: timing its launches times its refills.
        pool = ContainerPool(_TimedLaunches(launcher, metrics.pool_refilled), PoolConfig(
            enabled=settings.pool_enabled, max_containers=settings.pool_max_containers,
            max_memory_mb=settings.pool_max_memory_mb, idle_s=settings.pool_idle_s,
            slots=settings.worker_concurrency,
        ), running=running)
        runtime = ContainerRuntime(launcher, claimer=pool, running=running,
                                   default_oci_runtime=engine_info.get("DefaultRuntime"),
                                   on_container_started=metrics.container_started)
        services.worker = Worker(db, queue, events, runtime, settings, finisher, pool=pool)
        await services.worker.start()
    return services


class _TimedLaunches:
    """A pool's Launcher (runtimes/pool_shelves.py) that tells `observe` how long each
    successful launch took, measured as the pool measures its refills."""

    def __init__(self, launcher: ContainerLauncher, observe: Callable[[float], None]) -> None:
        self._launcher = launcher
        self._observe = observe

    async def launch(self, spec: TaskSpec, labels: dict[str, str]) -> LiveContainer:
        started = time.monotonic()
        live = await self._launcher.launch(spec, labels)
        self._observe(time.monotonic() - started)
        return live

    async def idle_cpu_ns(self, live: LiveContainer) -> int | None:
        return await self._launcher.idle_cpu_ns(live)

    async def remove(self, container_id: str, cgroup_parent: str | None = None) -> None:
        await self._launcher.remove(container_id, cgroup_parent)

    def remove_later(self, container_id: str, cgroup_parent: str | None = None) -> None:
        self._launcher.remove_later(container_id, cgroup_parent)


def egress_root(settings: Settings) -> Path:
    """This instance's folder of per-task egress socket directories (docs/egress.md)."""
    base = settings.egress_dir or settings.state_dir / "egress"
    return base / hashlib.sha256(settings.resolved_instance_id.encode()).hexdigest()[:12]


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
            before_sleep=_log_redis_wait,
            reraise=True,
        ):
            with attempt:
                await client.ping()
    except (RedisConnectionError, OSError) as exc:
        raise DependencyUnavailable(f"Redis did not answer within {wait_s:.0f} s: {exc}") from exc


def _log_redis_wait(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning("waiting for Redis (attempt %d): %s", state.attempt_number, error)
