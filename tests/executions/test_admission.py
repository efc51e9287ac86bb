"""Unit tests of who an execution belongs to and which buckets it is counted in (pure logic)."""

from __future__ import annotations

import pytest

from executor.errors import Forbidden, RequestInvalid
from executor.executions.admission import (
    check_idempotency_key,
    fingerprint,
    parse_request,
    parties_of,
    rate_buckets,
)
from executor.records.principals import Principal, Role
from executor.settings import Settings

USER, SERVICE, OPERATOR = (Principal(Role.USER, "alice"), Principal(Role.SERVICE, "shop"),
                           Principal(Role.OPERATOR, "ops"))


def _request(**fields: object) -> object:
    return parse_request({"agent_id": "a", "input": {}, **fields})


@pytest.mark.parametrize("principal, fields, expected", [
    (USER, {}, ("user:alice", "user:alice", "alice", None)),
    (SERVICE, {"on_behalf_of": "bob"}, ("service:shop", "user:bob", "bob", "service:shop")),
    (SERVICE, {}, ("service:shop", "service:shop", None, "service:shop")),
    (OPERATOR, {"on_behalf_of": "bob"}, ("operator:ops", "user:bob", "bob", None)),
    (OPERATOR, {}, ("operator:ops", "operator:ops", None, None)),
])
def test_parties(principal: Principal, fields: dict, expected: tuple) -> None:
    parties = parties_of(principal, _request(**fields))  # type: ignore[arg-type]
    assert (parties.caller, parties.owner, parties.user, parties.service) == expected


@pytest.mark.parametrize("fields", [{"on_behalf_of": "bob"}, {"webhook_url": "https://example.com/h"}])
def test_a_user_may_not_act_for_others_or_choose_a_webhook(fields: dict) -> None:
    with pytest.raises(Forbidden):
        parties_of(USER, _request(**fields))  # type: ignore[arg-type]


def test_buckets_follow_the_parties() -> None:
    settings = Settings()
    on_behalf = _request(on_behalf_of="bob")
    buckets = rate_buckets(SERVICE, parties_of(SERVICE, on_behalf), settings)  # type: ignore[arg-type]
    assert [(b.key, b.rate.name) for b in buckets] == [("user:bob", "user"), ("service:shop", "service")]
    assert rate_buckets(OPERATOR, parties_of(OPERATOR, _request()), settings) == []  # type: ignore[arg-type]
    off = Settings(user_rate_per_s=0)
    assert rate_buckets(USER, parties_of(USER, _request()), off) == []  # type: ignore[arg-type]


def test_the_fingerprint_ignores_key_order_but_not_values() -> None:
    first = fingerprint({"agent_id": "a", "input": {"x": 1, "y": 2}})
    assert fingerprint({"input": {"y": 2, "x": 1}, "agent_id": "a"}) == first
    assert fingerprint({"agent_id": "a", "input": {"x": 1, "y": 3}}) != first


def test_idempotency_keys() -> None:
    assert check_idempotency_key(None) is None and check_idempotency_key("order-1") == "order-1"
    for bad in ("", "x" * 256, "tab\there"):
        with pytest.raises(RequestInvalid):
            check_idempotency_key(bad)
