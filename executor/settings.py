"""One typed settings object, read from `EXECUTOR_*` environment variables once at start.

Nothing below `cli.py` reads `os.environ`: the settings are passed down.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from executor import faults
from executor.errors import ConfigurationError

PREFIX = "EXECUTOR_"
# Read by clients (the curl line, the CLI's client commands), not by the service.
CLIENT_VARIABLES = frozenset({"EXECUTOR_TOKEN", "EXECUTOR_URL"})


@dataclass(frozen=True)
class Limits:
    """Per-task resource limits, as callers send them (`limits` in the API) and records keep them."""

    memory_mb: int
    cpus: float
    pids: int
    timeout_s: float

    def to_dict(self) -> dict[str, float | int]:
        return {"memory_mb": self.memory_mb, "cpus": self.cpus, "pids": self.pids, "timeout_s": self.timeout_s}


def _default_state_dir() -> Path:
    # PostgreSQL runs as an unprivileged user when we are root, and /root is 0700:
    # a root service keeps its state where that user can reach it.
    if os.geteuid() == 0:
        return Path("/var/lib/executor")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "executor"


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    # Connections a process opens to Redis at most; past it a call waits for one to be free (up to
    # 10 s), as PostgreSQL's pool does, instead of failing (redis-py's own default: fail at 100).
    redis_max_connections: int = 512
    host: str = "127.0.0.1"
    port: int = 8080
    # The MCP endpoint (docs/mcp.md): its own listener on EXECUTOR_HOST at this port, path /mcp,
    # beside the HTTP API in the same process; 0: off (the default: a second listener is opt-in).
    mcp_port: int = 0
    # The HTTP API's base URL as callers reach it (e.g. behind a proxy), for the links an MCP tool
    # result carries (its receipt); unset: http://EXECUTOR_HOST:EXECUTOR_PORT.
    public_url: str | None = None
    state_dir: Path = field(default_factory=_default_state_dir)
    # Stable across restarts of the same host, so a restarted service recognises
    # the containers and executions it left behind.
    instance_id: str | None = None
    bootstrap_token: str | None = field(default=None, repr=False)

    default_limits: Limits = Limits(memory_mb=128, cpus=1.0, pids=64, timeout_s=10.0)
    max_limits: Limits = Limits(memory_mb=2048, cpus=2.0, pids=512, timeout_s=300.0)

    max_body_bytes: int = 2 * 1024 * 1024
    max_input_bytes: int = 1024 * 1024
    max_output_bytes: int = 1024 * 1024
    max_log_bytes: int = 1024 * 1024
    max_module_bytes: int = 50 * 1024 * 1024  # an uploaded .wasm
    wasm_default_fuel: int = 10**10  # about 8 s of straight-line code here
    wasm_max_fuel: int = 10**12
    tmpfs_mb: int = 16
    max_wait_s: float = 60.0
    schema_budget_ms: float = 2000.0  # checking one input or output against its schema; past it, refused

    worker_concurrency: int = 16
    worker_memory_mb: int = 0  # the sum of the memory limits of the tasks a worker runs at once; 0: no budget
    # A job whose worker stopped renewing it this long is reclaimed by another worker (XAUTOCLAIM).
    job_visibility_s: float = 30.0
    max_attempts: int = 2  # starts of one execution (a worker died mid-run: run again), then platform_error
    max_queue_depth: int = 10000  # jobs accepted and not yet finished; past it, 503 with Retry-After
    # The longest a new job may expect to wait for a worker (jobs waiting / drain rate, or the
    # oldest one's wait); past it, submissions answer 503 queue_full with Retry-After
    # (executor/executions/shedding.py). 0: no bound.
    max_queue_wait_s: float = 5.0
    fault_points: str | None = None  # tests and drills only: executor/faults.py
    docker_threads: int = 32
    # OCI runtimes (docs/security.md): the default for agents that ask for none (None: the engine's
    # default), and the comma-separated set an agent version may ask for (unset: only the default).
    oci_runtime: str | None = None  # e.g. "runsc"
    oci_runtimes: str | None = None  # e.g. "runc,runsc"
    register_examples: bool = True
    # The comma-separated images `up` builds before it registers the examples (their bases first);
    # unset: executor.examples.EXAMPLE_IMAGES. Tests set a throwaway image of their own here.
    example_images: str | None = None
    # Tests and drills: every answer is checked against the API contract; a mismatch is logged at
    # ERROR as "contract violation" (executor/api/response_check.py). Off in production: it costs.
    check_responses: bool = False
    # Benchmarks and diagnosis: answers carry a Server-Timing header with where the request's time
    # went, the worker's phases included (executor/observability/timing.py). Off by default.
    server_timing: bool = False
    debian_mirror: str = "http://deb.debian.org/debian"  # for debootstrap of the Debian base image
    # The folder of image build contexts (runtimes/images.py). Unset: those installed with the
    # package, else the checkout's images/.
    images_dir: Path | None = None

    # Pre-started containers (runtimes/pool.py): on by default for every agent.
    pool_enabled: bool = True
    pool_default_min: int = 1  # per agent, unless its registration says otherwise
    pool_default_max: int = 8
    pool_max_containers: int = 32  # across all agents, idle and starting
    pool_max_memory_mb: int = 4096  # the sum of their memory limits
    pool_idle_s: float = 120.0  # an agent without demand this long keeps none

    # Metering (runtimes/metering.py): "auto" reads each task's own cgroup when the engine
    # uses the cgroupfs driver and the host's cgroup tree is writable, else samples the
    # engine's stats API; "cgroup", "stats" force one; "off" measures nothing.
    metering: str = "auto"

    # Receipts (executor/receipts): the Ed25519 signing key comes from EXECUTOR_SIGNING_KEY
    # (a base64 32-byte seed) or from the key ring file, created 0600 on first start.
    signing_key: str | None = field(default=None, repr=False)
    signing_key_file: Path | None = None  # default: <state_dir>/signing-keys.json
    log_head_interval_s: float = 10.0  # sign a new tree head this often when the log grew

    # Marketplace (docs/marketplace.md). Rates are per second with a burst (GCRA in Redis);
    # a rate of 0 turns that limit off.
    user_rate_per_s: float = 5.0  # execution submissions per user
    user_burst: int = 20
    service_rate_per_s: float = 50.0  # execution submissions per service token subject
    service_burst: int = 200
    max_live_per_user: int = 8  # a user's executions PENDING or RUNNING at once; 0 = no cap
    idempotency_ttl_s: float = 86400.0  # how long an Idempotency-Key is remembered
    max_batch_items: int = 100  # submissions in one POST /v1/executions/batch (docs/batches.md)

    # Retention (docs/retention.md): a final execution's bodies (input, output, stdin, stdout, log)
    # are deleted this long after it finished; its record, receipt and log leaf stay. 0: kept for ever.
    retention_s: float = 0.0

    # Webhooks (executor/webhooks): Standard Webhooks, from an outbox in PostgreSQL.
    webhook_timeout_s: float = 10.0  # per attempt
    webhook_max_attempts: int = 12  # then the delivery is given up ("failed")
    webhook_retry_base_s: float = 2.0  # backoff: base * 2^(attempt-1), capped
    webhook_retry_max_s: float = 3600.0
    webhook_poll_s: float = 1.0  # how often the dispatcher looks for due deliveries
    webhook_allowed_hosts: str | None = None  # comma-separated hosts or *.suffixes; unset: any host
    webhook_allow_private: bool = False  # allow loopback, private and link-local addresses
    webhook_require_https: bool = False

    # Egress (docs/egress.md): which upstream hosts an agent version may declare (comma-separated
    # hosts or *.suffixes; unset: none, so no agent gets egress), a CA bundle the gateway trusts
    # besides the system's (tests: their loopback upstream), and where the per-task socket
    # directories go (unset: <state_dir>/egress; a socket path must stay under 108 bytes).
    egress_allowed_hosts: str | None = None
    egress_ca_file: Path | None = None
    egress_dir: Path | None = None
    # Agents' secrets (docs/secrets.md), sealed at rest with PyNaCl SecretBox: the key that seals
    # (a base64 32-byte key; unset: the key file <state_dir>/secrets-key, created 0600 on first
    # start, which is this host's alone: set the same key on every host of a deployment), and the
    # comma-separated base64 keys still accepted for reading after a rotation, until
    # `executor secrets reseal` has moved every row to the new key.
    secrets_key: str | None = field(default=None, repr=False)
    secrets_previous_keys: str | None = field(default=None, repr=False)

    # "auto": human lines when stderr is a terminal, else JSON lines; "human" or "json" force one
    # ("text" is the former name of "human"). docs/logs.md; NO_COLOR turns the colours off.
    log_format: str = "auto"

    @property
    def resolved_instance_id(self) -> str:
        return self.instance_id or _persistent_instance_id(self.state_dir)

    @property
    def resolved_signing_key_file(self) -> Path:
        return self.signing_key_file or self.state_dir / "signing-keys.json"

    @property
    def resolved_secrets_key_file(self) -> Path:
        return self.state_dir / "secrets-key"

    @property
    def resolved_public_url(self) -> str:
        """EXECUTOR_PUBLIC_URL without its trailing slash, else this process's own address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def allowed_oci_runtimes(self) -> tuple[str, ...]:
        """The runtimes an agent version may ask for: EXECUTOR_OCI_RUNTIMES, else the default alone."""
        if self.oci_runtimes is not None:
            return tuple(name.strip() for name in self.oci_runtimes.split(",") if name.strip())
        return (self.oci_runtime,) if self.oci_runtime else ()


def _persistent_instance_id(state_dir: Path) -> str:
    path = state_dir / "instance-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        state_dir.mkdir(parents=True, exist_ok=True)
        value = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        path.write_text(value + "\n")
        return value


def _parse_limits(raw: str, name: str) -> Limits:
    """`memory_mb=128,cpus=1,pids=64,timeout_s=10` (every key required)."""
    try:
        parts = dict(item.split("=", 1) for item in raw.split(",") if item.strip())
        return Limits(
            memory_mb=int(parts["memory_mb"]),
            cpus=float(parts["cpus"]),
            pids=int(parts["pids"]),
            timeout_s=float(parts["timeout_s"]),
        )
    except (KeyError, ValueError) as exc:
        raise ConfigurationError(
            f"{PREFIX}{name.upper()} must look like memory_mb=128,cpus=1,pids=64,timeout_s=10 ({exc})"
        ) from exc


def _convert(name: str, raw: str, annotation: str) -> object:
    try:
        if annotation in ("int",):
            return int(raw)
        if annotation in ("float",):
            return float(raw)
        if annotation == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(f"not a boolean: {raw!r}")
            return raw.lower() in ("1", "true", "yes")
        if annotation == "Path":
            return Path(raw)
        if annotation == "Limits":
            return _parse_limits(raw, name)
        return raw or None
    except ValueError as exc:
        raise ConfigurationError(f"{PREFIX}{name.upper()}: {exc}") from exc


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from `EXECUTOR_<FIELD>` variables; unknown variables are an error."""
    env = os.environ if environ is None else environ
    known = {f.name: f for f in fields(Settings)}
    values: dict[str, object] = {}
    for key, raw in env.items():
        if not key.startswith(PREFIX) or key in CLIENT_VARIABLES:
            continue
        name = key[len(PREFIX):].lower()
        if name not in known:
            raise ConfigurationError(f"unknown setting {key}; known: {', '.join(PREFIX + n.upper() for n in known)}")
        annotation = str(known[name].type).replace(" | None", "")
        values[name] = _convert(name, raw, annotation)
    settings = Settings(**values)  # type: ignore[arg-type]
    _check(settings)
    return settings


_MAX_RETENTION_S = 100 * 365.25 * 86400  # well inside PostgreSQL's interval range


def _check(settings: Settings) -> None:
    d, m = settings.default_limits, settings.max_limits
    if d.memory_mb > m.memory_mb or d.cpus > m.cpus or d.pids > m.pids or d.timeout_s > m.timeout_s:
        raise ConfigurationError("EXECUTOR_DEFAULT_LIMITS exceed EXECUTOR_MAX_LIMITS")
    if m.pids < 1 or d.pids < 1:
        raise ConfigurationError("pids limits must be at least 1 (0 would mean unlimited)")
    if not 0 <= settings.pool_default_min <= settings.pool_default_max <= settings.pool_max_containers:
        raise ConfigurationError(
            "need 0 <= EXECUTOR_POOL_DEFAULT_MIN <= EXECUTOR_POOL_DEFAULT_MAX <= EXECUTOR_POOL_MAX_CONTAINERS")
    if settings.log_format not in ("auto", "human", "json", "text"):
        raise ConfigurationError("EXECUTOR_LOG_FORMAT must be auto, human or json")
    if settings.metering not in ("auto", "cgroup", "stats", "off"):
        raise ConfigurationError("EXECUTOR_METERING must be auto, cgroup, stats or off")
    if settings.schema_budget_ms <= 0:
        raise ConfigurationError("EXECUTOR_SCHEMA_BUDGET_MS must be positive")
    if settings.log_head_interval_s <= 0:
        raise ConfigurationError("EXECUTOR_LOG_HEAD_INTERVAL_S must be positive")
    if (min(settings.user_rate_per_s, settings.service_rate_per_s) < 0
            or min(settings.user_burst, settings.service_burst) < 1):
        raise ConfigurationError("rates must be >= 0 (0: off) and bursts >= 1")
    if settings.max_batch_items < 1:
        raise ConfigurationError("EXECUTOR_MAX_BATCH_ITEMS must be >= 1")
    if settings.max_live_per_user < 0 or settings.idempotency_ttl_s <= 0:
        raise ConfigurationError("EXECUTOR_MAX_LIVE_PER_USER must be >= 0 and EXECUTOR_IDEMPOTENCY_TTL_S positive")
    if not (settings.retention_s == 0 or 1 <= settings.retention_s <= _MAX_RETENTION_S):
        raise ConfigurationError("EXECUTOR_RETENTION_S must be 0 (keep for ever) or seconds from 1 to 100 years")
    if settings.webhook_max_attempts < 1 or settings.webhook_timeout_s <= 0 or settings.webhook_retry_base_s <= 0:
        raise ConfigurationError("webhook attempts must be >= 1, its timeout and retry base positive")
    if settings.job_visibility_s < 1 or settings.max_attempts < 1 or settings.max_queue_depth < 1:
        raise ConfigurationError("EXECUTOR_JOB_VISIBILITY_S must be >= 1, EXECUTOR_MAX_ATTEMPTS and"
                                 " EXECUTOR_MAX_QUEUE_DEPTH >= 1")
    _check_oci_runtimes(settings)
    try:
        faults.parse(settings.fault_points)
    except ValueError as exc:
        raise ConfigurationError(f"EXECUTOR_FAULT_POINTS: {exc}") from exc
    if settings.images_dir is not None and not settings.images_dir.is_dir():
        raise ConfigurationError(f"EXECUTOR_IMAGES_DIR: {settings.images_dir} is not a directory")
    if settings.max_queue_wait_s < 0:
        raise ConfigurationError("EXECUTOR_MAX_QUEUE_WAIT_S must be >= 0 (0: no bound)")
    if settings.worker_memory_mb < 0:
        raise ConfigurationError("EXECUTOR_WORKER_MEMORY_MB must be >= 0 (0: no budget)")
    if settings.worker_concurrency < 1 or settings.docker_threads < 2:
        raise ConfigurationError("EXECUTOR_WORKER_CONCURRENCY must be >= 1 and EXECUTOR_DOCKER_THREADS >= 2")
    if not 0 <= settings.mcp_port <= 65535:
        raise ConfigurationError("EXECUTOR_MCP_PORT must be a port number from 0 (off) to 65535")
    if settings.redis_max_connections < 4:
        # the event subscription and the worker's blocking read each hold one for good
        raise ConfigurationError("EXECUTOR_REDIS_MAX_CONNECTIONS must be >= 4")


_RUNTIME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_oci_runtimes(settings: Settings) -> None:
    allowed = settings.allowed_oci_runtimes
    for name in (*allowed, *([settings.oci_runtime] if settings.oci_runtime else [])):
        if not _RUNTIME_NAME.match(name):
            raise ConfigurationError(f"OCI runtime name {name!r}: letters, digits, _ . - only")
    if settings.oci_runtimes is not None and settings.oci_runtime and settings.oci_runtime not in allowed:
        raise ConfigurationError("EXECUTOR_OCI_RUNTIME must be one of EXECUTOR_OCI_RUNTIMES")
