"""The Python SDK's secrets methods against the real service: write, replace, list, delete, reseal;
no answer holds a value, and the refusals are typed errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from executor_client import AsyncExecutor, Executor, Forbidden, NotFound, RequestInvalid
from tests.conftest import ServiceProcess

ECHO = {"image": "executor/busybox:latest", "command": ["cat"], "input_schema": {"type": "object"},
        "output_schema": {"type": "object"}}


@pytest.fixture
async def operator(market_service: ServiceProcess) -> AsyncIterator[AsyncExecutor]:
    async with AsyncExecutor(market_service.base_url, market_service.operator_token) as api:
        yield api


async def test_secrets_through_the_sdk(operator: AsyncExecutor, market_service: ServiceProcess) -> None:
    service = operator.with_token((await operator.create_token("service", f"sdk-{uuid.uuid4().hex[:8]}"))["token"])
    agent = await service.register_agent(name=f"sdk-secrets-{uuid.uuid4().hex[:8]}", **ECHO)  # type: ignore[typeddict-item]
    value = f"sdk-secret-{uuid.uuid4().hex}"

    written = await service.put_secret(agent["id"], "model_key", value)
    assert set(written) == {"name", "version", "created_at", "updated_at"} and written["version"] == 1
    assert (await service.put_secret(agent["id"], "model_key", value + "2"))["version"] == 2
    await service.put_secret(agent["id"], "backup_key", value)
    page = await service.list_secrets(agent["id"], limit=1)
    assert [s["name"] for s in page["items"]] == ["backup_key"] and page["next_cursor"]
    assert [s["name"] async for s in service.secrets(agent["id"], page_size=1)] == ["backup_key", "model_key"]
    assert value not in repr(page)

    await service.delete_secret(agent["id"], "backup_key")
    with pytest.raises(NotFound):
        await service.delete_secret(agent["id"], "backup_key")
    with pytest.raises(RequestInvalid) as refused:
        await service.put_secret(agent["id"], "model_key", "x" * 8193)
    assert "xxxxxxxx" not in str(refused.value)
    user = operator.with_token((await service.create_token("user", f"u-{uuid.uuid4().hex[:8]}"))["token"])
    with pytest.raises(Forbidden):
        await user.list_secrets(agent["id"])
    with pytest.raises(Forbidden):
        await service.reseal_secrets()
    assert await operator.reseal_secrets() == {"resealed": 0, "unreadable": 0}

    with Executor(market_service.base_url, market_service.operator_token) as sync:  # the generated sync client
        assert [s["name"] for s in sync.list_secrets(agent["id"])["items"]] == ["model_key"]
