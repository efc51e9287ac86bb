"""The server commands: up, serve, api, worker (the service itself) and migrate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shlex
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from executor.cli.exits import CommandError, Exit
from executor.cli.images import build_errors, engine
from executor.cli.output import Progress, print_json
from executor.cli.parsing import Subcommands, server_command
from executor.errors import ConfigurationError, DependencyUnavailable
from executor.settings import Settings

if TYPE_CHECKING:
    from executor.examples import Example
    from executor.records.agents import AgentVersion
    from executor.service import Services

log = logging.getLogger("executor")


def register(commands: Subcommands) -> None:
    server_command(commands, "up", "start everything on this machine (private PostgreSQL/Redis when no URL is set)",
                   _up, json_logs=True, instance=True)
    server_command(commands, "serve", "serve the API and run the worker, with EXECUTOR_DATABASE_URL/REDIS_URL",
                   _serve_command, json_logs=True, instance=True)
    server_command(commands, "api", "serve the HTTP API only (workers run elsewhere), with the same URLs",
                   _serve_command, json_logs=True, instance=True)
    server_command(commands, "worker", "run a worker only (health, readiness and metrics on EXECUTOR_PORT)",
                   _serve_command, json_logs=True, instance=True)
    migrate = server_command(commands, "migrate", "apply the database migrations and exit", _migrate_command)
    migrate.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                         help="keep trying to reach PostgreSQL this long (default: fail at once)")


def _up(settings: Settings, args: argparse.Namespace) -> int:
    with dependencies(settings, embedded=True) as (database_url, redis_url):
        asyncio.run(_serve(settings, database_url, redis_url, announce=True))
    return 0


def _serve_command(settings: Settings, args: argparse.Namespace) -> int:
    role = args.command if args.command in ("api", "worker") else "all"
    with dependencies(settings, embedded=False) as (database_url, redis_url):
        asyncio.run(_serve(settings, database_url, redis_url, announce=False, role=role))
    return 0


def _migrate_command(settings: Settings, args: argparse.Namespace) -> int:
    applied = asyncio.run(_migrate(existing_database_url(settings), wait_s=args.wait))
    if args.json:
        print_json({"applied": applied})
    else:
        print("applied: " + ", ".join(applied) if applied else "the database is up to date")
    return 0


def existing_database_url(settings: Settings) -> str:
    """The configured database, or the private server of a running `executor up`."""
    if settings.database_url:
        return settings.database_url
    from executor.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(settings.state_dir / "postgres")
    if not (server.data_dir / "PG_VERSION").exists():
        raise ConfigurationError("set EXECUTOR_DATABASE_URL, or run `executor up` first")
    return server.dsn


async def open_database(database_url: str, *, wait_s: float = 0.0) -> Any:
    """A pool for a one-shot command: by default one attempt, so that an unreachable database is
    one line and exit 3 at once (the service itself keeps retrying at start: storage.database)."""
    from executor.storage.database import create_pool

    try:
        return await create_pool(database_url, wait_s=wait_s, max_size=2)
    except DependencyUnavailable as exc:
        cause = exc.__cause__ or exc
        raise CommandError(f"PostgreSQL did not answer: {cause}", "dependency_unavailable",
                           Exit.UNREACHABLE) from None


async def _migrate(database_url: str, *, wait_s: float) -> list[str]:
    from executor.storage.database import migrate

    pool = await open_database(database_url, wait_s=wait_s)
    try:
        applied: list[str] = await migrate(pool)
    finally:
        await pool.close()
    return applied


@contextlib.contextmanager
def dependencies(settings: Settings, *, embedded: bool) -> Iterator[tuple[str, str]]:
    """The configured URLs; for `up`, private servers under the state directory for those not set."""
    from executor.embedded import EmbeddedPostgres, EmbeddedRedis

    if not embedded and not (settings.database_url and settings.redis_url):
        raise ConfigurationError("`executor serve` needs EXECUTOR_DATABASE_URL and EXECUTOR_REDIS_URL (or use `up`)")
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    try:
        database_url, redis_url = settings.database_url, settings.redis_url
        if database_url is None:
            postgres = EmbeddedPostgres(settings.state_dir / "postgres")
            database_url = postgres.start()
            started.append(postgres)
        if redis_url is None:
            redis_server = EmbeddedRedis(settings.state_dir / "redis")
            redis_url = redis_server.start()
            started.append(redis_server)
        yield database_url, redis_url
    finally:
        for server in reversed(started):
            server.stop()


async def _serve(settings: Settings, database_url: str, redis_url: str, *, announce: bool, role: str = "all") -> None:
    """`role`: "all" (API and worker), "api" (HTTP API only) or "worker" (the worker, with only
    health, readiness, status and metrics over HTTP)."""
    from executor.api.access import ACCESS_LOGGER, AccessLog
    from executor.api.app import make_app
    from executor.api.problems import problems_below_routing
    from executor.service import start_services

    services = await start_services(settings, database_url=database_url, redis_url=redis_url,
                                    run_worker=role != "api", serve_api=role != "worker")
    runner: web.AppRunner | None = None
    try:
        new_operator_token = await services.tokens.ensure_bootstrap_operator(settings.bootstrap_token)
        examples = await _prepare_examples(services) if announce and settings.register_examples else []
        runner = web.AppRunner(make_app(services, api=role != "worker"), access_log_class=AccessLog,
                               access_log=logging.getLogger(ACCESS_LOGGER))
        await runner.setup()
        problems_below_routing(runner)
        await web.TCPSite(runner, settings.host, settings.port).start()
        base_url = f"http://{settings.host}:{settings.port}"
        log.info("executor %s (%s) listening on %s", settings.resolved_instance_id, role, base_url)
        stop = _stop_on_signal()  # before the banner: once it shows, SIGTERM stops cleanly
        if announce:
            _print_banner(base_url, new_operator_token, examples)
        await stop.wait()
        log.info("stopping: letting running tasks finish")
    finally:
        if runner is not None:
            await runner.cleanup()
        await services.stop()


async def _prepare_examples(services: Services) -> list[tuple[AgentVersion, Example]]:
    from executor.examples import EXAMPLE_IMAGES, load_examples, register_examples
    from runtimes.images import build_images, find_images_dir

    settings = services.settings
    names = [name.strip() for name in (settings.example_images or "").split(",") if name.strip()] \
        or list(EXAMPLE_IMAGES)
    # The first start builds the Debian base with debootstrap (about a minute): on a terminal a
    # line with the elapsed time and the step; otherwise (and with JSON logs) one log line a step.
    progress = Progress("building the example images", plain=lambda line: log.info("image build: %s", line),
                        interactive=sys.stderr.isatty() and settings.log_format != "json")

    def build() -> None:
        client = engine()
        try:
            with progress, build_errors():
                build_images(client, names, progress=progress.step,
                             debian_mirror=settings.debian_mirror, images_dir=settings.images_dir)
        finally:
            client.close()

    await asyncio.to_thread(build)
    return await register_examples(services.agents, load_examples(find_images_dir(settings.images_dir)))


def _print_banner(base_url: str, new_token: str | None, examples: list[tuple[AgentVersion, Example]]) -> None:
    lines = ["", f"executor is up on {base_url}"]
    if new_token:
        lines += ["", "operator token (shown once, keep it):", f"  export EXECUTOR_TOKEN={new_token}"]
    else:
        lines += ["", "use the operator token printed at first start (or `executor tokens create --local`) "
                      "as $EXECUTOR_TOKEN"]
    for agent, example in examples:
        body = json.dumps({"agent_id": str(agent.agent_id), "input": example.example_input})
        lines += [
            "",
            f"run the example agent {agent.name}:",
            f"  curl -s -X POST '{base_url}/v1/executions?wait=30' -H \"Authorization: Bearer $EXECUTOR_TOKEN\""
            f" -H 'Content-Type: application/json' -d {shlex.quote(body)}",
        ]
    lines += [
        "",
        "check a run's signed receipt offline (ID: the id in its record):",
        f"  curl -s {base_url}/v1/executions/$ID/receipt -H \"Authorization: Bearer $EXECUTOR_TOKEN\" > receipt.json",
        f"  executor receipts verify receipt.json --keys {base_url}/v1/keys",
        "",
        f"or with this command line: export EXECUTOR_URL={base_url}; executor agents list; executor executions list",
    ]
    print("\n".join(lines) + "\n", flush=True)


def _stop_on_signal() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (from now on, in the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
