"""What an agent version may declare for egress: good declarations, and each bad field refused
with its JSON pointer."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from executor.egress.policy import (
    BYTES_IN,
    BYTES_OUT,
    MIB,
    REQUESTS,
    EgressLimits,
    EgressPolicy,
    Injection,
    Upstream,
    host_allowed,
    parse_egress,
    task_environment,
    unsafe_segment,
)
from executor.errors import RequestInvalid

ALLOWED = "api.example.com, *.models.example"
MODELS: dict[str, Any] = {
    "name": "models", "url": "https://API.Example.com:8443/v1", "methods": ["POST", "GET"],
    "inject": {"header": "Authorization", "secret": "model_key", "format": "Bearer {}"},
}


def parse(egress: Any, limits: Any = None, *, allowed: str | None = ALLOWED, max_time_s: float = 30.0) -> Any:
    return parse_egress(egress, limits, allowed_hosts=allowed, max_time_s=max_time_s)


def pointer_of(egress: Any, limits: Any = None, **kwargs: Any) -> str:
    with pytest.raises(RequestInvalid) as caught:
        parse(egress, limits, **kwargs)
    assert caught.value.errors is not None and len(caught.value.errors) == 1
    pointer: str = caught.value.errors[0]["pointer"]
    assert caught.value.detail.startswith(pointer.lstrip("/") + ": ")
    return pointer


def test_a_full_declaration() -> None:
    policy = parse([MODELS, {"name": "search-2", "url": "https://eu.models.example/"}],
                   {"requests": 5, "bytes_out": 10, "bytes_in": 0, "time_s": 2.5})
    assert policy == EgressPolicy(
        (
            Upstream("models", "https://api.example.com:8443/v1", ("POST", "GET"),
                     Injection("Authorization", "model_key", "Bearer {}")),
            Upstream("search-2", "https://eu.models.example/", ("GET",), None),
        ),
        EgressLimits(requests=5, bytes_out=10, bytes_in=0, time_s=2.5),
    )
    assert policy.upstream("models").origin == "https://api.example.com:8443"
    assert policy.upstream("models").prefix == "/v1"
    assert policy.upstream("search-2").prefix == "/"
    assert policy.upstream("other") is None
    assert policy.upstreams[0].inject.render("k") == "Bearer k"


def test_caps_default_to_the_documented_values_and_time_to_the_task_limit() -> None:
    policy = parse([MODELS], max_time_s=12)
    assert policy.limits == EgressLimits(REQUESTS[0], BYTES_OUT[0], BYTES_IN[0], 12.0)
    assert (policy.limits.requests, policy.limits.bytes_out, policy.limits.bytes_in) == (100, MIB, 10 * MIB)
    assert parse([MODELS], {"requests": 10_000, "bytes_out": 64 * MIB, "bytes_in": 256 * MIB, "time_s": 12},
                 max_time_s=12).limits == EgressLimits(10_000, 64 * MIB, 256 * MIB, 12.0)


def test_the_stored_form_round_trips_through_json() -> None:
    policy = parse([MODELS, {"name": "b", "url": "https://api.example.com"}], {"time_s": 1})
    stored = json.loads(json.dumps(policy.to_dict()))
    assert stored["upstreams"][1] == {"name": "b", "url": "https://api.example.com", "methods": ["GET"],
                                      "inject": None}
    assert EgressPolicy.from_dict(stored) == policy


def test_no_egress() -> None:
    assert parse(None) is None
    assert parse([]) is None
    assert pointer_of(None, {"requests": 1}) == "/egress_limits"


def test_a_declaration_defaults_to_get_only_and_to_the_plain_secret() -> None:
    policy = parse([{"name": "a", "url": "https://api.example.com",
                     "inject": {"header": "X-Api-Key", "secret": "key"}}])
    assert policy.upstreams[0].methods == ("GET",)
    assert policy.upstreams[0].inject == Injection("X-Api-Key", "key", "{}")


def test_no_declaration_passes_when_the_operator_allows_no_host() -> None:
    assert pointer_of([MODELS], allowed=None) == "/egress/0/url"
    assert pointer_of([MODELS], allowed="") == "/egress/0/url"
    assert pointer_of([MODELS], allowed=" , ") == "/egress/0/url"


@pytest.mark.parametrize(("host", "allowed", "expected"), [
    ("api.example.com", "api.example.com", True),
    ("API.example.com", " other.org ,api.example.com ", True),
    ("api.example.com.", "api.example.com", True),
    ("evil-api.example.com", "api.example.com", False),
    ("api.example.com.evil.org", "api.example.com", False),
    ("a.models.example", "*.models.example", True),
    ("a.b.models.example", "*.models.example", True),
    ("models.example", "*.models.example", False),  # the suffix itself is not below it
    ("xmodels.example", "*.models.example", False),
    ("anything.org", "*", False),  # no allow-everything
    ("anything.org", "*.", False),
    ("127.0.0.1", "127.0.0.1", True),
    ("api.example.com", None, False),
])
def test_host_allowed(host: str, allowed: str | None, expected: bool) -> None:
    assert host_allowed(host, allowed) is expected


def with_(**fields: Any) -> list[dict[str, Any]]:
    item = {**MODELS, **fields}
    return [{name: value for name, value in item.items() if value is not ...}]


@pytest.mark.parametrize(("egress", "pointer"), [
    ("models", "/egress"),
    ({"name": "models"}, "/egress"),
    ([MODELS] * 17, "/egress"),
    (["models"], "/egress/0"),
    ([MODELS, {**MODELS, "url": "https://api.example.com"}], "/egress/1/name"),
    (with_(extra=1), "/egress/0/extra"),
    (with_(name=...), "/egress/0/name"),
    (with_(name="Models"), "/egress/0/name"),
    (with_(name="1models"), "/egress/0/name"),
    (with_(name="mo_dels"), "/egress/0/name"),
    (with_(name="m" * 64), "/egress/0/name"),
    (with_(url=...), "/egress/0/url"),
    (with_(url="http://api.example.com"), "/egress/0/url"),
    (with_(url="api.example.com/v1"), "/egress/0/url"),
    (with_(url="https:api.example.com"), "/egress/0/url"),
    (with_(url="https:///v1"), "/egress/0/url"),
    (with_(url="https://api.example.com/v1?key=1"), "/egress/0/url"),
    (with_(url="https://api.example.com/v1?"), "/egress/0/url"),
    (with_(url="https://api.example.com/v1#top"), "/egress/0/url"),
    (with_(url="https://user:pw@api.example.com/v1"), "/egress/0/url"),
    (with_(url="https://api.example.com:0/v1"), "/egress/0/url"),
    (with_(url="https://api.example.com:99999/v1"), "/egress/0/url"),
    (with_(url="https://api.example.com:/v1"), "/egress/0/url"),
    (with_(url="https://api.example.com:x/v1"), "/egress/0/url"),
    (with_(url="https://other.example.com/v1"), "/egress/0/url"),
    (with_(url="https://models.example/v1"), "/egress/0/url"),
    (with_(url="https://api.example.com/v1/../admin"), "/egress/0/url"),
    (with_(url="https://api.example.com/v1/%2e%2e/admin"), "/egress/0/url"),
    (with_(url="https://api.example.com/v1//admin"), "/egress/0/url"),
    (with_(url="https://api.example.com/v1/%2fadmin"), "/egress/0/url"),
    (with_(url="https://api.example.com/v1/a b"), "/egress/0/url"),
    (with_(url="https://api.example.com/v1/é"), "/egress/0/url"),
    (with_(url="https://api.example.com\\v1"), "/egress/0/url"),
    (with_(url="https://api.example.com/%zz"), "/egress/0/url"),
    (with_(url="https://" + "a" * 2050 + ".example.com"), "/egress/0/url"),
    (with_(url=5), "/egress/0/url"),
    (with_(methods=[]), "/egress/0/methods"),
    (with_(methods="GET"), "/egress/0/methods"),
    (with_(methods=["GET", "CONNECT"]), "/egress/0/methods/1"),
    (with_(methods=["get"]), "/egress/0/methods/0"),
    (with_(methods=["TRACE"]), "/egress/0/methods/0"),
    (with_(methods=["GET", "GET"]), "/egress/0/methods/1"),
    (with_(inject="Bearer"), "/egress/0/inject"),
    (with_(inject={"header": "Authorization", "secret": "k", "value": "x"}), "/egress/0/inject/value"),
    (with_(inject={"secret": "k"}), "/egress/0/inject/header"),
    (with_(inject={"header": "X Key", "secret": "k"}), "/egress/0/inject/header"),
    (with_(inject={"header": "X-Key:", "secret": "k"}), "/egress/0/inject/header"),
    (with_(inject={"header": "Host", "secret": "k"}), "/egress/0/inject/header"),
    (with_(inject={"header": "content-length", "secret": "k"}), "/egress/0/inject/header"),
    (with_(inject={"header": "Transfer-Encoding", "secret": "k"}), "/egress/0/inject/header"),
    (with_(inject={"header": "Connection", "secret": "k"}), "/egress/0/inject/header"),
    (with_(inject={"header": "Proxy-Authorization", "secret": "k"}), "/egress/0/inject/header"),
    (with_(inject={"header": "X-Key"}), "/egress/0/inject/secret"),
    (with_(inject={"header": "X-Key", "secret": "1key"}), "/egress/0/inject/secret"),
    (with_(inject={"header": "X-Key", "secret": "a/b"}), "/egress/0/inject/secret"),
    (with_(inject={"header": "X-Key", "secret": "k", "format": "Bearer"}), "/egress/0/inject/format"),
    (with_(inject={"header": "X-Key", "secret": "k", "format": "{}{}"}), "/egress/0/inject/format"),
    (with_(inject={"header": "X-Key", "secret": "k", "format": "{}\r\nX-Evil: 1"}), "/egress/0/inject/format"),
    (with_(inject={"header": "X-Key", "secret": "k", "format": 1}), "/egress/0/inject/format"),
])
def test_a_bad_declaration_is_refused_at_its_field(egress: Any, pointer: str) -> None:
    assert pointer_of(egress) == pointer


@pytest.mark.parametrize(("limits", "pointer"), [
    ([], "/egress_limits"),
    ({"request": 1}, "/egress_limits/request"),
    ({"requests": 0}, "/egress_limits/requests"),
    ({"requests": 10_001}, "/egress_limits/requests"),
    ({"requests": True}, "/egress_limits/requests"),
    ({"requests": 1.0}, "/egress_limits/requests"),
    ({"bytes_out": -1}, "/egress_limits/bytes_out"),
    ({"bytes_out": 64 * MIB + 1}, "/egress_limits/bytes_out"),
    ({"bytes_in": 256 * MIB + 1}, "/egress_limits/bytes_in"),
    ({"bytes_in": "1"}, "/egress_limits/bytes_in"),
    ({"time_s": 0}, "/egress_limits/time_s"),
    ({"time_s": -1}, "/egress_limits/time_s"),
    ({"time_s": 30.5}, "/egress_limits/time_s"),
    ({"time_s": math.nan}, "/egress_limits/time_s"),
    ({"time_s": False}, "/egress_limits/time_s"),
])
def test_a_bad_cap_is_refused_at_its_field(limits: Any, pointer: str) -> None:
    assert pointer_of([MODELS], limits) == pointer


def test_pointers_follow_the_caller() -> None:
    with pytest.raises(RequestInvalid) as caught:
        parse_egress([{"name": "x"}], None, allowed_hosts=ALLOWED, max_time_s=1, pointer="/version/egress")
    assert caught.value.errors == [{"pointer": "/version/egress/0/url", "detail": caught.value.errors[0]["detail"]}]


@pytest.mark.parametrize(("segment", "unsafe"), [
    ("chat", False), ("a.b", False), ("...", False), ("%41", False), ("v1;x=1", False),
    (".", True), ("..", True), ("%2e", True), ("%2E%2e", True), (".%2e", True), ("..;", True), ("..;x=1", True),
    ("%2f", True), ("a%2Fb", True), ("%5c", True), ("a\\b", True), ("%25", True), ("%252e%252e", True),
    ("%00", True), ("%0a", True), ("%zz", True),
])
def test_unsafe_segments(segment: str, unsafe: bool) -> None:
    assert unsafe_segment(segment) is unsafe


def test_the_task_environment_names_the_socket_and_each_upstream() -> None:
    policy = parse([MODELS, {"name": "web-search", "url": "https://api.example.com"}])
    assert task_environment(policy, "/run/executor/egress/egress.sock") == {
        "EXECUTOR_EGRESS_SOCKET": "/run/executor/egress/egress.sock",
        "EXECUTOR_EGRESS_URL_MODELS": "http://models",
        "EXECUTOR_EGRESS_URL_WEB_SEARCH": "http://web-search",
    }
