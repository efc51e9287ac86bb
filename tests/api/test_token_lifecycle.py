"""Tokens over HTTP against real processes: issue (with expiry), list, revoke; a revoked or expired
token is refused on the next request by every API process sharing the database; the last live
operator token stays; the CLI's tokens list and revoke."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from executor.embedded import EmbeddedPostgres, EmbeddedRedis
from executor.errors import Conflict
from executor.records.principals import Role
from executor.tokens import Tokens
from tests.cli.conftest import one_line_error, run
from tests.conftest import Api, ServiceProcess, make_service, operator_clients, serving, with_api_sibling

TOKEN_FIELDS = {"id", "role", "subject", "created_at", "created_by", "expires_at", "last_used_at", "revoked_at",
                "priorities"}


@pytest.fixture(scope="module")
def pair(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """Two API processes on one database: a whole service, and a second process serving the API only."""
    with with_api_sibling(make_service(postgres, redis_server, "tokens", redis_db="14", pool_enabled="false"),
                          "tokens_b") as pair:
        yield pair


@pytest.fixture
async def clients(pair: tuple[ServiceProcess, ServiceProcess]) -> AsyncIterator[tuple[Api, Api]]:
    """The operator's client of each process."""
    async with operator_clients(pair) as clients:
        yield clients


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def issue(api: Api, role: str, subject: str, **fields: Any) -> tuple[Api, dict[str, Any]]:
    """A client holding a new token, and the answer that issued it."""
    status, issued, headers = await api.post("/v1/tokens", json={"role": role, "subject": subject, **fields})
    assert status == 201, issued
    assert headers["Cache-Control"] == "no-store"
    assert set(issued) == TOKEN_FIELDS | {"token"} and issued["token"].startswith("exe_")
    return api.as_token(issued["token"], subject), issued


async def everything(api: Api, query: str = "") -> list[dict[str, Any]]:
    """Every token the caller may list (with a filter), page after page."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        status, page, _ = await api.get(f"/v1/tokens?limit=100{query}{suffix}")
        assert status == 200, page
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def assert_no_secret(answer: Any, *secrets: str) -> None:
    text = json.dumps(answer)
    assert "token_hash" not in text
    for secret in secrets:
        assert secret not in text
    for item in answer["items"] if isinstance(answer, dict) and "items" in answer else [answer]:
        assert set(item) == TOKEN_FIELDS, item


async def refused(api: Api) -> bool:
    status, problem, _ = await api.get("/v1/agents")
    if status == 401:
        assert problem["type"] == "urn:executor:problem:unauthenticated"
        return True
    assert status == 200, problem
    return False


async def test_operators_list_all_services_their_users_users_nothing(clients: tuple[Api, Api]) -> None:
    operator, _ = clients
    tag = uuid.uuid4().hex[:8]
    shop, shop_issued = await issue(operator, "service", f"shop-{tag}")
    other, _ = await issue(operator, "service", f"other-{tag}")
    alice, alice_issued = await issue(shop, "user", f"alice-{tag}")
    bob, bob_issued = await issue(shop, "user", f"bob-{tag}")
    carol, carol_issued = await issue(other, "user", f"carol-{tag}")
    assert alice_issued["created_by"] == f"service:shop-{tag}" and alice_issued["role"] == "user"
    assert shop_issued["created_by"] == "operator:bootstrap"
    secrets = [t["token"] for t in (shop_issued, alice_issued, bob_issued, carol_issued)]

    # A service lists the user tokens it issued, and nothing else.
    status, page, _ = await shop.get("/v1/tokens")
    assert status == 200
    assert_no_secret(page, *secrets)
    assert [t["subject"] for t in page["items"]] == [f"bob-{tag}", f"alice-{tag}"]  # newest first
    assert page["next_cursor"] is None

    # An operator lists every token.
    listed = await everything(operator)
    assert_no_secret({"items": listed}, *secrets)
    ids = {t["id"] for t in listed}
    assert {t["id"] for t in (shop_issued, alice_issued, bob_issued, carol_issued)} <= ids
    assert any(t["subject"] == "bootstrap" and t["role"] == "operator" and t["created_by"] is None for t in listed)
    only_services = await everything(operator, "&role=service")
    assert {t["role"] for t in only_services} == {"service"} and shop_issued["id"] in {t["id"] for t in only_services}
    by_subject = await everything(operator, f"&subject=carol-{tag}")
    assert [t["id"] for t in by_subject] == [carol_issued["id"]]

    # A user may not issue, list or revoke tokens.
    for method, path, body in (("GET", "/v1/tokens", None), ("POST", "/v1/tokens", {"role": "user", "subject": "x"}),
                               ("DELETE", f"/v1/tokens/{bob_issued['id']}", None)):
        status, problem, _ = await alice.request(method, path, json=body)
        assert status == 403 and problem["type"] == "urn:executor:problem:forbidden", (method, problem)

    # A service issues user tokens only.
    for role in ("service", "operator"):
        status, problem, _ = await shop.post("/v1/tokens", json={"role": role, "subject": f"x-{tag}"})
        assert status == 403 and problem["type"] == "urn:executor:problem:forbidden"

    # A service revokes the user tokens it issued; any other id is not found.
    for token_id in (carol_issued["id"], shop_issued["id"], str(uuid.uuid4()), "not-a-uuid"):
        status, problem, _ = await shop.request("DELETE", f"/v1/tokens/{token_id}")
        assert status == 404 and problem["type"] == "urn:executor:problem:not_found", token_id
    status, revoked, _ = await shop.request("DELETE", f"/v1/tokens/{bob_issued['id']}")
    assert status == 200 and revoked["id"] == bob_issued["id"] and revoked["revoked_at"] is not None
    assert_no_secret(revoked, bob_issued["token"])
    assert await refused(bob) and not await refused(carol)
    status, again, _ = await shop.request("DELETE", f"/v1/tokens/{bob_issued['id']}")
    assert status == 200 and again == revoked  # idempotent: the same record, the same instant

    # An operator revokes any token (a malformed id is not found).
    status, _, _ = await operator.request("DELETE", f"/v1/tokens/{carol_issued['id']}")
    assert status == 200 and await refused(carol)
    status, problem, _ = await operator.request("DELETE", "/v1/tokens/%20")
    assert status == 404 and problem["type"] == "urn:executor:problem:not_found"


async def test_a_revoked_token_is_refused_at_once_by_every_api_process(clients: tuple[Api, Api]) -> None:
    on_a, on_b = clients
    user_a, issued = await issue(on_a, "user", f"dora-{uuid.uuid4().hex[:8]}")
    user_b = on_b.as_token(issued["token"])
    assert not await refused(user_a) and not await refused(user_b)  # each process has seen it work
    status, _, _ = await on_a.request("DELETE", f"/v1/tokens/{issued['id']}")
    assert status == 200
    assert await refused(user_b)  # the other process, on the very next request
    assert await refused(user_a)


async def test_an_expired_token_is_refused_by_every_api_process(clients: tuple[Api, Api]) -> None:
    on_a, on_b = clients
    expires_at = datetime.now(UTC) + timedelta(seconds=2)
    user_a, issued = await issue(on_a, "user", f"eve-{uuid.uuid4().hex[:8]}",
                                 expires_at=expires_at.isoformat().replace("+00:00", "Z"))
    assert datetime.fromisoformat(issued["expires_at"]) == expires_at
    user_b = on_b.as_token(issued["token"])
    assert not await refused(user_a) and not await refused(user_b)
    await asyncio.sleep((expires_at - datetime.now(UTC)).total_seconds() + 0.3)
    assert await refused(user_a) and await refused(user_b)
    [listed] = await everything(on_a, f"&subject={issued['subject']}")
    assert listed["revoked_at"] is None and listed["expires_at"] == issued["expires_at"]


async def test_expires_at_must_be_a_future_instant(clients: tuple[Api, Api]) -> None:
    operator, _ = clients
    for expires_at in (in_seconds(-60), "2027-01-31T00:00:00", "tomorrow", 1700000000):
        status, problem, _ = await operator.post("/v1/tokens", json={"role": "user", "subject": "frank",
                                                                     "expires_at": expires_at})
        assert status == 422, (expires_at, problem)
        assert problem["type"] == "urn:executor:problem:request_invalid"
        assert [e["pointer"] for e in problem["errors"]] == ["/expires_at"], problem
    _, issued = await issue(operator, "user", "frank", expires_at=None)
    assert issued["expires_at"] is None


async def test_last_used_at_is_kept_to_about_a_minute(clients: tuple[Api, Api]) -> None:
    operator, on_b = clients
    user, issued = await issue(operator, "user", f"gus-{uuid.uuid4().hex[:8]}")
    assert issued["last_used_at"] is None
    assert not await refused(user)
    [first] = await everything(operator, f"&subject={issued['subject']}")
    assert first["last_used_at"] is not None
    assert not await refused(user) and not await refused(on_b.as_token(issued["token"]))
    [second] = await everything(operator, f"&subject={issued['subject']}")
    assert second["last_used_at"] == first["last_used_at"]  # not written again within the minute


async def test_pages_follow_the_cursor_and_limit_is_bounded(clients: tuple[Api, Api]) -> None:
    operator, _ = clients
    subject = f"henry-{uuid.uuid4().hex[:8]}"
    made = [(await issue(operator, "user", subject))[1]["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    sizes = []
    while True:
        suffix = f"&cursor={cursor}" if cursor else ""
        status, page, _ = await operator.get(f"/v1/tokens?subject={subject}&limit=2{suffix}")
        assert status == 200, page
        sizes.append(len(page["items"]))
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1] and seen == made[::-1]  # newest first, each once

    for query, pointer in (("limit=101", "?limit"), ("limit=0", "?limit"), ("limit=ten", "?limit"),
                           ("cursor=bm90LW91cnM", "?cursor"), ("role=admin", "?role")):
        status, problem, _ = await operator.get(f"/v1/tokens?{query}")
        assert status == 422 and problem["type"] == "urn:executor:problem:request_invalid", (query, problem)
        assert [e["pointer"] for e in problem["errors"]] == [pointer], problem


async def test_the_cli_lists_and_revokes_tokens(clients: tuple[Api, Api], pair: tuple[ServiceProcess, ...]) -> None:
    """`executor tokens` on the database (no token: how the first one is made), seen at once by
    the other API process."""
    _, on_b = clients
    on_db = {"EXECUTOR_DATABASE_URL": pair[0].env["EXECUTOR_DATABASE_URL"]}
    subject = f"ivy-{uuid.uuid4().hex[:8]}"
    created = run("tokens", "create", "--role", "user", "--subject", subject, "--expires-at", in_seconds(3600),
                  "--json", env=on_db)
    assert created.returncode == 0, created.stderr
    issued = json.loads(created.stdout)
    assert issued["created_by"] is None and issued["expires_at"] is not None
    user = on_b.as_token(issued["token"])
    assert not await refused(user)

    listed = run("tokens", "list", "--subject", subject, "--json", env=on_db)
    assert listed.returncode == 0, listed.stderr
    tokens = json.loads(listed.stdout)
    assert [t["id"] for t in tokens] == [issued["id"]] and set(tokens[0]) == TOKEN_FIELDS
    assert issued["token"] not in listed.stdout
    everyone = run("tokens", "list", "--role", "operator", "--json", env=on_db)
    assert any(token["subject"] == "bootstrap" for token in json.loads(everyone.stdout))

    revoked = run("tokens", "revoke", issued["id"], "--json", env=on_db)
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["revoked_at"] is not None
    assert await refused(user)

    one_line_error(run("tokens", "revoke", str(uuid.uuid4()), env=on_db), 5, "not_found")
    past = run("tokens", "create", "--role", "user", "--subject", subject, "--expires-at", in_seconds(-5), env=on_db)
    assert past.returncode in (1, 2) and "future" in past.stderr and "Traceback" not in past.stderr, past.stderr


async def test_the_last_live_operator_token_stays(postgres: EmbeddedPostgres, redis_server: EmbeddedRedis) -> None:
    async with serving(postgres, redis_server, "last_operator", redis_db="13", pool_enabled="false") as (svc, boot):
        [bootstrap] = await everything(boot, "&role=operator")
        assert bootstrap["subject"] == "bootstrap" and bootstrap["created_by"] is None

        # Alone, the bootstrap token cannot be revoked; once another operator exists, it can.
        status, problem, _ = await boot.request("DELETE", f"/v1/tokens/{bootstrap['id']}")
        assert status == 409 and problem["type"] == "urn:executor:problem:conflict"
        assert "another operator token first" in problem["detail"]
        first, first_issued = await issue(boot, "operator", "ops-1")
        status, revoked, _ = await first.request("DELETE", f"/v1/tokens/{bootstrap['id']}")
        assert status == 200 and revoked["revoked_at"] is not None
        assert await refused(boot)
        status, problem, _ = await first.request("DELETE", f"/v1/tokens/{first_issued['id']}")
        assert status == 409  # now the last one itself

        # Two operators revoking each other at once: one of them stays.
        second, second_issued = await issue(first, "operator", "ops-2")
        answers = await asyncio.gather(first.request("DELETE", f"/v1/tokens/{second_issued['id']}"),
                                       second.request("DELETE", f"/v1/tokens/{first_issued['id']}"))
        statuses = sorted(status for status, _, _ in answers)
        # The loser is refused the revocation (409), or, revoked first, is no longer let in at all (401).
        assert statuses in ([200, 409], [200, 401]), answers
        survivor, survivor_id = (first, first_issued["id"]) if not await refused(first) else (
            second, second_issued["id"])
        live = [t for t in await everything(survivor, "&role=operator") if t["revoked_at"] is None]
        assert [t["id"] for t in live] == [survivor_id]

        # The same race in the database, many times: never both.
        db = await asyncpg.create_pool(svc.env["EXECUTOR_DATABASE_URL"], min_size=2, max_size=4)
        try:
            tokens = Tokens(db)
            secret, last_id = survivor.token, survivor_id
            for round_ in range(20):
                other = await tokens.issue(Role.OPERATOR, f"ops-race-{round_}")
                outcomes = await asyncio.gather(tokens.revoke(None, last_id), tokens.revoke(None, other.id),
                                                return_exceptions=True)
                assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "TokenInfo"], outcomes
                if isinstance(outcomes[0], Conflict):
                    continue  # the older one stays
                secret, last_id = other.token, other.id
            assert await tokens.authenticate(secret) is not None
        finally:
            await db.close()
        survivor = boot.as_token(secret)

        # The host's CLI may not revoke it either.
        cli = run("tokens", "revoke", last_id, env={"EXECUTOR_DATABASE_URL": svc.env["EXECUTOR_DATABASE_URL"]})
        one_line_error(cli, 1, "conflict")
        assert "another operator token first" in cli.stderr

        # A restart with the same EXECUTOR_BOOTSTRAP_TOKEN does not bring the revoked one back.
        svc.stop()
        svc.start()
        assert await refused(boot)
        assert not await refused(survivor)
