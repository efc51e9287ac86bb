"""Agents' secrets through the live service (docs/secrets.md): written by the agent's service or an
operator, never shown again (no answer, no log line, no row in the clear), refused to everyone
else, and still readable by the gateway's reveal() after the operator rotates the key and reseals.

Every answer is also checked against the API contract by the service itself (EXECUTOR_CHECK_RESPONSES)."""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

import asyncpg

from executor.embedded import EmbeddedPostgres, EmbeddedRedis
from executor.secrets.sealing import KeyRing, SecretUnreadable, encode_key, key_id, new_key
from executor.secrets.service import Secrets
from tests.conftest import Api, serving

FIRST = "sk-first-" + uuid.uuid4().hex
SECOND = "sk-second-" + uuid.uuid4().hex
OTHER = "tok-other-" + uuid.uuid4().hex
TOO_LONG = "L" * 8193
WIDE = "é" + "\u00e9" * 4096  # 4097 characters, 8194 bytes of UTF-8: within the contract's length, over the bytes
VALUES = (FIRST, SECOND, OTHER, TOO_LONG, WIDE)
ENTRY_FIELDS = {"name", "version", "created_at", "updated_at"}


def shows_no_value(body: Any) -> None:
    text = body.decode(errors="replace") if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False)
    for value in VALUES:
        assert value not in text
    assert "sk-first" not in text and "sk-second" not in text and "LLLLLLLLLL" not in text and "éééééé" not in text


async def problem(api: Api, method: str, path: str, status: int, slug: str, **kwargs: Any) -> dict[str, Any]:
    got, body, headers = await api.request(method, path, **kwargs)
    assert got == status and headers["Content-Type"].startswith("application/problem+json"), (got, body)
    assert body["type"] == f"urn:executor:problem:{slug}", body
    shows_no_value(body)
    return cast(dict[str, Any], body)


async def test_secrets_are_write_only_sealed_and_survive_a_key_rotation(
        postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, images: dict[str, str]) -> None:
    old_key, new = new_key(), new_key()
    async with serving(postgres, redis_server, "secrets", redis_db="11", secrets_key=encode_key(old_key)) as (svc, api):
        service = await api.new_token("service")
        agent_id = await service.register(["cat"])
        base = f"/v1/agents/{agent_id}/secrets"

        # Written (201, version 1), replaced (200, version 2): never the value in the answer.
        status, written, _ = await service.request("PUT", f"{base}/model_key", json={"value": FIRST})
        assert status == 201 and set(written) == ENTRY_FIELDS and written["name"] == "model_key", written
        assert written["version"] == 1
        status, replaced, _ = await service.request("PUT", f"{base}/model_key", json={"value": SECOND})
        assert status == 200 and replaced["version"] == 2 and replaced["created_at"] == written["created_at"]
        assert replaced["updated_at"] >= written["updated_at"]
        status, by_operator, _ = await api.request("PUT", f"{base}/Search.API-key", json={"value": OTHER})
        assert status == 201 and by_operator["version"] == 1  # an operator manages every agent's
        for body in (written, replaced, by_operator):
            shows_no_value(body)

        # Listed by name, with versions, never values; paginated like every list.
        status, page, _ = await service.get(base)
        assert status == 200 and set(page) == {"items", "next_cursor"} and page["next_cursor"] is None
        assert [(s["name"], s["version"]) for s in page["items"]] == [("Search.API-key", 1), ("model_key", 2)]
        assert all(set(s) == ENTRY_FIELDS for s in page["items"])
        shows_no_value(page)
        status, first, _ = await service.get(f"{base}?limit=1")
        assert status == 200 and [s["name"] for s in first["items"]] == ["Search.API-key"] and first["next_cursor"]
        status, rest, _ = await service.get(f"{base}?limit=1&cursor={first['next_cursor']}")
        assert [s["name"] for s in rest["items"]] == ["model_key"]
        await problem(service, "GET", f"{base}?cursor=%20nope", 422, "request_invalid")

        # Who: a user never, another service never (403); an agent that does not exist is 404.
        user = await api.new_token("user")
        stranger = await api.new_token("service")
        for caller in (user, stranger):
            await problem(caller, "PUT", f"{base}/model_key", 403, "forbidden", json={"value": OTHER})
            await problem(caller, "GET", base, 403, "forbidden")
            await problem(caller, "DELETE", f"{base}/model_key", 403, "forbidden")
        await problem(user, "POST", "/v1/secrets/reseal", 403, "forbidden")
        await problem(service, "POST", "/v1/secrets/reseal", 403, "forbidden")
        for missing in (str(uuid.uuid4()), "not-an-id"):
            await problem(service, "PUT", f"/v1/agents/{missing}/secrets/model_key", 404, "not_found",
                          json={"value": FIRST})
            await problem(service, "GET", f"/v1/agents/{missing}/secrets", 404, "not_found")
        await problem(api.as_token(None), "PUT", f"{base}/model_key", 401, "unauthenticated", json={"value": FIRST})

        # Malformed: problems that point at the field, and never quote what was sent.
        await problem(service, "PUT", f"{base}/model_key", 400, "malformed_request",
                      data=b'{"value": "' + FIRST.encode(), headers={"Content-Type": "application/json"})
        for body, pointer in (({}, "/value"), ({"value": ""}, "/value"), ({"value": 5}, "/value"),
                              ({"value": TOO_LONG}, "/value"), ({"value": WIDE}, "/value"),
                              ({"value": FIRST, "surprise": SECOND}, "/surprise"),
                              ({"value": FIRST + "\u0000"}, "/value")):
            refused = await problem(service, "PUT", f"{base}/model_key", 422, "request_invalid", json=body)
            assert pointer in json.dumps(refused), refused
        for name in ("9lives", "a" * 65, "with%20space"):
            await problem(service, "PUT", f"{base}/{name}", 422, "request_invalid", json={"value": FIRST})
        status, page, _ = await service.get(base)
        assert [(s["name"], s["version"]) for s in page["items"]] == [("Search.API-key", 1), ("model_key", 2)]

        # Deleted: 204, then 404; gone from the list.
        status, body, _ = await service.request("DELETE", f"{base}/Search.API-key")
        assert status == 204 and body == b""
        await problem(service, "DELETE", f"{base}/Search.API-key", 404, "not_found")
        await problem(service, "DELETE", f"{base}/9lives", 404, "not_found")
        status, page, _ = await service.get(base)
        assert [s["name"] for s in page["items"]] == ["model_key"]

        # At rest: sealed under the operator's key, no plaintext in the row; the gateway's reveal() reads it.
        db = await asyncpg.create_pool(svc.env["EXECUTOR_DATABASE_URL"], min_size=1, max_size=2)
        try:
            rows = await db.fetch("SELECT * FROM agent_secrets WHERE agent_id = $1", uuid.UUID(agent_id))
            assert [(r["name"], r["version"], r["key_id"]) for r in rows] == [("model_key", 2, key_id(old_key))]
            for row in rows:
                assert all(value.encode() not in bytes(cell) if isinstance(cell, bytes) else value not in str(cell)
                           for value in VALUES for cell in row.values())
            reveal = Secrets(db, KeyRing(old_key), agents=cast(Any, None)).reveal
            assert await reveal(uuid.UUID(agent_id), "model_key") == SECOND
            assert await reveal(uuid.UUID(agent_id), "Search.API-key") is None
            assert await reveal(uuid.uuid4(), "model_key") is None

            # Rotation: the new key seals, the old one still reads until the reseal moves every row.
            svc.stop()
            svc.env.update(EXECUTOR_SECRETS_KEY=encode_key(new), EXECUTOR_SECRETS_PREVIOUS_KEYS=encode_key(old_key))
            svc.start()
            status, _, _ = await service.request("PUT", f"{base}/fresh", json={"value": OTHER})
            assert status == 201
            status, report, _ = await api.post("/v1/secrets/reseal")
            assert status == 200 and report == {"resealed": 1, "unreadable": 0}, report
            status, report, _ = await api.post("/v1/secrets/reseal")
            assert report == {"resealed": 0, "unreadable": 0}
            rows = await db.fetch("SELECT name, version, key_id FROM agent_secrets WHERE agent_id = $1 ORDER BY name",
                                  uuid.UUID(agent_id))
            assert [tuple(r) for r in rows] == [("fresh", 1, key_id(new)), ("model_key", 2, key_id(new))]
            reveal = Secrets(db, KeyRing(new), agents=cast(Any, None)).reveal  # the old key is no longer needed
            assert await reveal(uuid.UUID(agent_id), "model_key") == SECOND
            assert await reveal(uuid.UUID(agent_id), "fresh") == OTHER
            try:
                await Secrets(db, KeyRing(old_key), agents=cast(Any, None)).reveal(uuid.UUID(agent_id), "model_key")
                raise AssertionError("a key that is not held unsealed a secret")
            except SecretUnreadable as exc:
                assert exc.key_id == key_id(new) and SECOND not in str(exc)
        finally:
            await db.close()

    # Nothing the service logged holds a value (the access log, the problems, the reseal).
    logged = svc.log_path.read_text(errors="replace")
    assert "PUT" in logged and "/secrets/" in logged  # the access log was captured
    for value in VALUES:
        assert value not in logged
    assert "LLLLLLLLLL" not in logged and "éééééé" not in logged
