"""The `executor` command: up, serve, api, worker, migrate, tokens create|list|revoke, images build, keys,
receipts verify, log audit."""

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
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from executor.errors import ConfigurationError, ExecutorError
from executor.settings import Settings, load_settings

if TYPE_CHECKING:
    from executor.examples import Example
    from executor.records.agents import AgentVersion
    from executor.service import Services

log = logging.getLogger("executor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="executor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start everything on this machine (private PostgreSQL/Redis when no URL is set)")
    commands.add_parser("serve", help="serve the API and run the worker, with EXECUTOR_DATABASE_URL/REDIS_URL")
    commands.add_parser("api", help="serve the HTTP API only (workers run elsewhere), with the same URLs")
    commands.add_parser("worker", help="run a worker only (health, readiness and metrics on EXECUTOR_PORT)")
    commands.add_parser("migrate", help="apply the database migrations and exit")
    status = commands.add_parser("status", help="what a running instance is doing (needs an operator token)")
    status.add_argument("--url", help="the instance's base URL (default: from EXECUTOR_HOST/EXECUTOR_PORT)")
    tokens = commands.add_parser("tokens", help="manage bearer tokens").add_subparsers(dest="action", required=True)
    create = tokens.add_parser("create", help="create a token and print it (once)")
    create.add_argument("--role", choices=["user", "service", "operator"], required=True)
    create.add_argument("--subject", required=True)
    create.add_argument("--expires-at", help="an RFC 3339 date-time after which it is refused (default: never)")
    listing = tokens.add_parser("list", help="every token, newest first, one JSON object a line (never a secret)")
    listing.add_argument("--role", choices=["user", "service", "operator"])
    listing.add_argument("--subject")
    revoke = tokens.add_parser("revoke", help="revoke a token at once (not the last live operator token)")
    revoke.add_argument("id")
    images = commands.add_parser("images", help="build images").add_subparsers(dest="action", required=True)
    build = images.add_parser("build", help="build images from images/ (cached by content)")
    build.add_argument("names", nargs="*", help="image names (default: all)")
    _add_receipt_commands(commands)
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
        from executor.observability.logs import configure_logging, set_instance

        configure_logging(settings.log_format)  # JSON lines on stderr (EXECUTOR_LOG_FORMAT=text: plain)
        if args.command in ("up", "serve", "api", "worker"):
            set_instance(settings.resolved_instance_id)
        if args.command == "images":
            return _build_images(args.names, settings.debian_mirror, settings.images_dir)
        if args.command == "status":
            return _status(args.url or f"http://{settings.host}:{settings.port}")
        if args.command == "migrate":
            return asyncio.run(_migrate(_existing_database_url(settings)))
        if args.command == "tokens":
            return asyncio.run(_token_command(_existing_database_url(settings), args))
        if args.command in ("keys", "receipts", "log"):
            return _receipt_command(args, settings)
        with _dependencies(settings, embedded=args.command == "up") as (database_url, redis_url):
            asyncio.run(_serve(settings, database_url, redis_url, announce=args.command == "up",
                               role=args.command if args.command in ("api", "worker") else "all"))
            return 0
    except (ConfigurationError, ExecutorError) as exc:
        print(f"executor: {exc}", file=sys.stderr)
        return 2


def _add_receipt_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="signing keys").add_subparsers(dest="action", required=True)
    keys.add_parser("rotate", help="a new signing key for this host; older keys stay published")
    keys.add_parser("list", help="published keys, retired ones included")
    retire = keys.add_parser("retire", help="stop publishing a key and drop its private half")
    retire.add_argument("kid")
    receipts = commands.add_parser("receipts", help="receipts").add_subparsers(dest="action", required=True)
    verify = receipts.add_parser("verify", help="check a receipt bundle offline; exit 1 when it does not hold")
    verify.add_argument("receipt", help="the JSON of GET /v1/executions/{id}/receipt ('-' for stdin)")
    verify.add_argument("--keys", help="a JWK set file or URL (default: this service's /v1/keys)")
    verify.add_argument("--input", help="the exact input bytes (GET /v1/executions/{id}/input)")
    verify.add_argument("--output", help="the exact output bytes (GET /v1/executions/{id}/stdout)")
    verify.add_argument("--head", help="a signed tree head kept from earlier (GET /v1/log/head)")
    verify.add_argument("--json", action="store_true", help="print the whole report as JSON")
    log_parser = commands.add_parser("log", help="the transparency log").add_subparsers(dest="action", required=True)
    audit = log_parser.add_parser("audit", help="fetch heads over time and check each extends the last")
    audit.add_argument("--url", help="the service's base URL (default: from EXECUTOR_HOST/EXECUTOR_PORT)")
    audit.add_argument("--keys", help="a JWK set file or URL (default: the service's /v1/keys)")
    audit.add_argument("--state", default="executor-log-head.json", help="where the last verified head is kept")
    audit.add_argument("--rounds", type=int, default=1)
    audit.add_argument("--interval", type=float, default=60.0, help="seconds between rounds")


def _receipt_command(args: argparse.Namespace, settings: Settings) -> int:

    from executor.receipts import commands

    base_url = getattr(args, "url", None) or f"http://{settings.host}:{settings.port}"
    if args.command == "keys" and args.action == "rotate":
        try:
            database_url: str | None = _existing_database_url(settings)
        except ConfigurationError:
            database_url = None  # the service publishes the new key itself when it starts
        return commands.rotate(settings, database_url)
    if args.command == "keys" and args.action == "list":
        return commands.list_keys(settings, _existing_database_url(settings))
    if args.command == "keys":
        return commands.retire(settings, _existing_database_url(settings), args.kid)
    keys = args.keys or base_url + "/v1/keys"
    if args.command == "receipts":
        return commands.verify(args.receipt, keys_source=keys, input_path=args.input, output_path=args.output,
                               head_path=args.head, as_json=args.json)
    return commands.audit(base_url.rstrip("/"), keys_source=keys, state_path=Path(args.state), rounds=args.rounds,
                          interval_s=args.interval)


def _existing_database_url(settings: Settings) -> str:
    """The configured database, or the private server of a running `executor up`."""
    if settings.database_url:
        return settings.database_url
    from executor.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(settings.state_dir / "postgres")
    if not (server.data_dir / "PG_VERSION").exists():
        raise ConfigurationError("set EXECUTOR_DATABASE_URL, or run `executor up` first")
    return server.dsn


@contextlib.contextmanager
def _dependencies(settings: Settings, *, embedded: bool) -> Iterator[tuple[str, str]]:
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


async def _migrate(database_url: str) -> int:
    from executor.storage.database import create_pool, migrate

    pool = await create_pool(database_url)
    try:
        applied = await migrate(pool)
        print("applied: " + ", ".join(applied) if applied else "the database is up to date")
    finally:
        await pool.close()
    return 0


async def _token_command(database_url: str, args: argparse.Namespace) -> int:
    """tokens create | list | revoke, on the database itself: the host acts as an operator
    (docs/tokens.md); a token made here has no `created_by`."""
    from executor.records.principals import Role
    from executor.storage.database import create_pool, migrate
    from executor.tokens import Tokens, parse_expiry

    pool = await create_pool(database_url)
    try:
        await migrate(pool)
        tokens = Tokens(pool)
        if args.action == "create":
            issued = await tokens.issue(Role(args.role), args.subject, expires_at=parse_expiry(args.expires_at))
            print(json.dumps(issued.to_dict()))
        elif args.action == "list":
            cursor: str | None = None
            while True:
                page, cursor = await tokens.list_page(None, role=args.role, subject=args.subject, cursor=cursor,
                                                      limit=100)
                for token in page:
                    print(json.dumps(token.to_dict()))
                if cursor is None:
                    break
        else:
            print(json.dumps((await tokens.revoke(None, args.id)).to_dict()))
    finally:
        await pool.close()
    return 0


def _status(base_url: str) -> int:
    """Print /v1/status of a running instance; the operator token comes from EXECUTOR_TOKEN."""
    import os
    import urllib.error
    import urllib.request

    token = os.environ.get("EXECUTOR_TOKEN")
    if not token:
        raise ConfigurationError("set EXECUTOR_TOKEN to an operator token")
    request = urllib.request.Request(base_url + "/v1/status", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            current = json.loads(response.read())
    except (urllib.error.URLError, OSError) as exc:
        raise ExecutorError(f"could not read {base_url}/v1/status: {exc}") from exc
    worker, pool = current["worker"], current["pool"]
    print(f"instance {current['instance']}: {worker['running']}/{worker['concurrency']} tasks running")
    if pool is None:
        print("pool: off")
    else:
        claims = pool["hits"] + pool["misses"]
        rate = f"{100 * pool['hits'] / claims:.0f}%" if claims else "-"
        refill = f"{1000 * pool['refill_seconds_total'] / pool['refills']:.0f} ms" if pool["refills"] else "-"
        print(f"pool: {pool['containers']} ready, {pool['starting']} starting, {pool['shelves']} shelves; "
              f"hits {pool['hits']}, misses {pool['misses']} (hit rate {rate}); discarded {pool['discarded']}; "
              f"mean refill {refill}")
    return 0


def _build_images(names: list[str], debian_mirror: str, images_dir: Path | None) -> int:
    import docker

    from runtimes.images import build_images

    client = docker.from_env()
    try:
        for built in build_images(client, names or None, progress=lambda line: print(f"  {line}"),
                                  debian_mirror=debian_mirror, images_dir=images_dir):
            print(f"{built.name}: {'cached' if built.cached else 'built'} {built.tag} {built.image_id[:19]}")
    finally:
        client.close()
    return 0


async def _serve(settings: Settings, database_url: str, redis_url: str, *, announce: bool, role: str = "all") -> None:
    """`role`: "all" (API and worker), "api" (HTTP API only) or "worker" (the worker, with only
    health, readiness, status and metrics over HTTP)."""
    from executor.api.app import make_app
    from executor.api.problems import problems_below_routing
    from executor.service import start_services

    services = await start_services(settings, database_url=database_url, redis_url=redis_url,
                                    run_worker=role != "api", serve_api=role != "worker")
    runner: web.AppRunner | None = None
    try:
        new_operator_token = await services.tokens.ensure_bootstrap_operator(settings.bootstrap_token)
        examples = await _prepare_examples(services) if announce and settings.register_examples else []
        runner = web.AppRunner(make_app(services, api=role != "worker"), access_log=log.getChild("access"))
        await runner.setup()
        problems_below_routing(runner)
        await web.TCPSite(runner, settings.host, settings.port).start()
        base_url = f"http://{settings.host}:{settings.port}"
        log.info("executor %s (%s) listening on %s", settings.resolved_instance_id, role, base_url)
        if announce:
            _print_banner(base_url, new_operator_token, examples)
        await _wait_for_signal()
    finally:
        if runner is not None:
            await runner.cleanup()
        await services.stop()


async def _prepare_examples(services: Services) -> list[tuple[AgentVersion, Example]]:
    import docker

    from executor.examples import EXAMPLE_IMAGES, load_examples, register_examples
    from runtimes.images import build_images, find_images_dir

    def build() -> None:
        client = docker.from_env()
        try:
            build_images(client, list(EXAMPLE_IMAGES), progress=lambda line: log.info("image build: %s", line),
                         debian_mirror=services.settings.debian_mirror, images_dir=services.settings.images_dir)
        finally:
            client.close()

    await asyncio.to_thread(build)
    return await register_examples(services.agents, load_examples(find_images_dir(services.settings.images_dir)))


def _print_banner(base_url: str, new_token: str | None, examples: list[tuple[AgentVersion, Example]]) -> None:
    lines = ["", f"executor is up on {base_url}"]
    if new_token:
        lines += ["", "operator token (shown once, keep it):", f"  export EXECUTOR_TOKEN={new_token}"]
    else:
        lines += ["", "use the operator token printed at first start (or `executor tokens create`) as $EXECUTOR_TOKEN"]
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
    ]
    print("\n".join(lines) + "\n", flush=True)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: letting running tasks finish")


if __name__ == "__main__":
    sys.exit(main())
