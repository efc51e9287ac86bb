"""`executor tokens list|create|revoke`.

With a token (`--token`, EXECUTOR_TOKEN), over the API like every client command: an operator
manages every token, a service its users'. Without one, or with `--local`, on the database
itself, the host acting as an operator (docs/tokens.md): the way to the first token (`docker-compose
run --rm migrate tokens create …`), or back in after every operator token was lost. That path
reads the server settings (EXECUTOR_DATABASE_URL, else the private server of `executor up`); a
token made there has no `created_by`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from executor.cli.exits import CommandError, Exit
from executor.cli.http import Api, quote
from executor.cli.output import print_json, print_table, when
from executor.cli.parsing import Subcommands, client_command, group, server_settings

ROLES = ("user", "service", "operator")
LOCAL_HELP = ("act on the database of this host, not the API (the default when no token is given; reads "
              "EXECUTOR_DATABASE_URL, else the private server of `executor up`)")


def register(commands: Subcommands) -> None:
    tokens = group(commands, "tokens", "bearer tokens: list, create, revoke")
    listing = client_command(tokens, "list", "tokens, newest first (never a secret)", _list)
    listing.add_argument("--role", choices=ROLES)
    listing.add_argument("--subject")
    listing.add_argument("--local", action="store_true", help=LOCAL_HELP)
    create = client_command(tokens, "create", "create a token and print its secret (shown once)", _create)
    create.add_argument("role", nargs="?", choices=ROLES)
    create.add_argument("subject", nargs="?")
    create.add_argument("--role", dest="role_option", choices=ROLES, help="the same as ROLE")
    create.add_argument("--subject", dest="subject_option", help="the same as SUBJECT")
    create.add_argument("--expires-at", metavar="RFC3339", help="refused after this instant (default: never)")
    create.add_argument("--priorities", metavar="CLASSES", type=_classes,
                        help="a service token's priority classes, comma-separated, normal among them "
                             "(e.g. high,normal,low; default: normal,low)")
    create.add_argument("--local", action="store_true", help=LOCAL_HELP)
    revoke = client_command(tokens, "revoke", "revoke a token at once (not the last live operator token)", _revoke)
    revoke.add_argument("id")
    revoke.add_argument("--local", action="store_true", help=LOCAL_HELP)


def _list(api: Api, args: argparse.Namespace) -> int:
    if _local(api, args):
        items = _on_database(args)
    else:
        items = api.items("/v1/tokens", query={"role": args.role, "subject": args.subject})
    if args.json:
        print_json(items)
        return 0
    print_table(("ID", "ROLE", "SUBJECT", "CREATED", "BY", "EXPIRES", "LAST USED", "REVOKED"), [
        (t["id"], t["role"], t["subject"], when(t["created_at"]), t["created_by"], when(t["expires_at"]),
         when(t["last_used_at"]), when(t["revoked_at"]))
        for t in items])
    return 0


def _classes(text: str) -> list[str]:
    found = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in found if part not in ("high", "normal", "low")]
    if not found or unknown:
        raise argparse.ArgumentTypeError("comma-separated classes among high, normal, low")
    return found


def _create(api: Api, args: argparse.Namespace) -> int:
    args.role = args.role or args.role_option
    args.subject = args.subject or args.subject_option
    if not args.role or not args.subject:
        raise CommandError("tokens create needs a ROLE and a SUBJECT", "usage", Exit.USAGE)
    if _local(api, args):
        issued = _on_database(args)
    else:
        body = {"role": args.role, "subject": args.subject, "expires_at": args.expires_at}
        if args.priorities is not None:
            body["priorities"] = args.priorities
        issued = api.call("POST", "/v1/tokens", body=body)
    if args.json:
        print_json(issued)
    else:
        print(issued["token"])  # stdout holds the secret alone, for `$(executor tokens create …)`
        print(f"{issued['role']} token {issued['id']} for {issued['subject']}, expires "
              f"{when(issued['expires_at']) if issued['expires_at'] else 'never'} (the secret is shown once)",
              file=sys.stderr)
    return 0


def _revoke(api: Api, args: argparse.Namespace) -> int:
    revoked = _on_database(args) if _local(api, args) else api.call("DELETE", f"/v1/tokens/{quote(args.id)}")
    if args.json:
        print_json(revoked)
    else:
        print(f"revoked {revoked['id']} ({revoked['role']} {revoked['subject']}) at {when(revoked['revoked_at'])}")
    return 0


def _local(api: Api, args: argparse.Namespace) -> bool:
    return bool(args.local or not api.token)


def _on_database(args: argparse.Namespace) -> Any:
    from executor.cli.server import existing_database_url
    from executor.errors import ConfigurationError

    settings = server_settings()
    try:
        database_url = existing_database_url(settings)
    except ConfigurationError as exc:
        if args.local:
            raise
        raise ConfigurationError(f"no token (set EXECUTOR_TOKEN or pass --token to use the API), and no database "
                                 f"on this host: {exc}") from None
    return asyncio.run(_database_action(database_url, args))


async def _database_action(database_url: str, args: argparse.Namespace) -> Any:
    from executor.cli.server import open_database
    from executor.records.principals import Role
    from executor.storage.database import migrate
    from executor.tokens import Tokens, parse_expiry

    pool = await open_database(database_url)
    try:
        await migrate(pool)
        tokens = Tokens(pool)
        if args.action == "create":
            issued = await tokens.issue(Role(args.role), args.subject, expires_at=parse_expiry(args.expires_at),
                                        granted=tuple(args.priorities) if args.priorities is not None else None)
            return issued.to_dict()
        if args.action == "list":
            found: list[dict[str, Any]] = []
            cursor: str | None = None
            while True:
                page, cursor = await tokens.list_page(None, role=args.role, subject=args.subject, cursor=cursor,
                                                      limit=100)
                found += [token.to_dict() for token in page]
                if cursor is None:
                    return found
        return (await tokens.revoke(None, args.id)).to_dict()
    finally:
        await pool.close()
