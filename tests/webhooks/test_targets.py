"""Where webhooks may go: every rule of targets.check_url, and the resolver that refuses names
resolving to private addresses."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from executor.errors import RequestInvalid
from executor.settings import Settings
from executor.webhooks.targets import PublicResolver, check_url, is_public

OPEN = Settings()


def refused(url: object, settings: Settings = OPEN, **kwargs: str) -> str:
    with pytest.raises(RequestInvalid) as caught:
        check_url(url, settings, **kwargs)
    assert caught.value.status == 422
    errors = caught.value.errors
    assert errors is not None and len(errors) == 1
    assert errors[0]["pointer"] == kwargs.get("pointer", "/webhook_url")
    return str(errors[0]["detail"])


@pytest.mark.parametrize("url, normalised", [
    ("https://hooks.example.com/in?x=1", "https://hooks.example.com/in?x=1"),
    ("HTTP://Hooks.Example.COM", "http://hooks.example.com/"),
    ("https://hooks.example.com:8443/a/b", "https://hooks.example.com:8443/a/b"),
    ("https://hooks.example.com./x", "https://hooks.example.com/x"),
    ("https://bücher.example/", "https://xn--bcher-kva.example/"),
    ("http://93.184.216.34/x", "http://93.184.216.34/x"),
    ("http://[2606:4700:0:0::1111]/", "http://[2606:4700::1111]/"),
])
def test_accepted_urls_come_back_normalised(url: str, normalised: str) -> None:
    assert check_url(url, OPEN) == normalised


@pytest.mark.parametrize("value", [None, 42, ["https://a.example/"], {"url": "x"}])
def test_not_a_string(value: object) -> None:
    assert "string" in refused(value)


def test_too_long() -> None:
    url = "https://hooks.example.com/" + "a" * 2048
    assert "2048" in refused(url)
    assert check_url(url[:2048], OPEN) == url[:2048]


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/", "file:///etc/passwd", "hooks.example.com/x",
                                 "javascript:alert(1)", "gopher://hooks.example.com/"])
def test_only_http_and_https(url: str) -> None:
    assert "scheme" in refused(url)


def test_https_only_when_required() -> None:
    strict = replace(OPEN, webhook_require_https=True)
    assert "https" in refused("http://hooks.example.com/", strict)
    assert check_url("https://hooks.example.com/", strict) == "https://hooks.example.com/"


@pytest.mark.parametrize("url", ["http:///path", "https://", "http://:80/", "http:hooks"])
def test_a_host_is_required(url: str) -> None:
    assert "host" in refused(url)


@pytest.mark.parametrize("url", ["https://user:pw@hooks.example.com/", "https://user@hooks.example.com/",
                                 "https://@hooks.example.com/", "https://hooks.example.com@10.0.0.1/"])
def test_no_credentials(url: str) -> None:
    assert "credentials" in refused(url)


@pytest.mark.parametrize("url", ["https://hooks.example.com/#frag", "https://hooks.example.com/x#"])
def test_no_fragment(url: str) -> None:
    assert "fragment" in refused(url)


@pytest.mark.parametrize("url", ["https://hooks.example.com/a b", "https://hooks.exa\tmple.com/",
                                 "https://hooks.example.com/\n", "https://hooks.example.com\\@evil.example/"])
def test_no_whitespace_control_characters_or_backslash(url: str) -> None:
    assert "whitespace" in refused(url)


@pytest.mark.parametrize("url", ["https://hooks.example.com:99999/", "https://hooks.example.com:0/",
                                 "https://[::1/", "https://hooks.example.com:x/"])
def test_bad_ports_and_brackets(url: str) -> None:
    refused(url)


@pytest.mark.parametrize("url", ["https://%31%32%37.0.0.1/", "https://a..example.com/", "https://.example.com/"])
def test_hosts_that_are_not_domain_names(url: str) -> None:
    assert "domain name" in refused(url)


def test_allowed_hosts_exact_and_wildcard() -> None:
    listed = replace(OPEN, webhook_allowed_hosts=" hooks.example.com , *.partner.example ,93.184.216.34")
    assert check_url("https://hooks.example.com/", listed)
    assert check_url("https://HOOKS.example.com./", listed)
    assert check_url("https://a.partner.example/", listed)
    assert check_url("https://b.a.partner.example/", listed)
    assert check_url("http://93.184.216.34/", listed)
    for url in ("https://partner.example/", "https://other.example.com/", "https://evilpartner.example/",
                "https://hooks.example.com.evil.example/", "http://93.184.216.35/"):
        assert "allowed" in refused(url, listed), url


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "[::1]", "[::]", "[fe80::1]",
    "[fc00::1]", "[ff02::1]", "[::ffff:127.0.0.1]", "[::ffff:10.0.0.1]", "[2002:7f00:1::]", "[::ffff:7f00:1]",
])
def test_private_and_special_ip_literals_are_refused(host: str) -> None:
    assert "private" in refused(f"http://{host}:8080/hook")
    assert check_url(f"http://{host}:8080/hook", replace(OPEN, webhook_allow_private=True)).startswith("http://")


def test_odd_ipv4_forms_are_normalised_when_allowed() -> None:
    allowed = replace(OPEN, webhook_allow_private=True)
    assert check_url("http://127.1:9/", allowed) == "http://127.0.0.1:9/"
    assert check_url("http://2130706433/", allowed) == "http://127.0.0.1/"


def test_a_public_ipv4_mapped_address_is_accepted() -> None:
    assert check_url("http://[::ffff:93.184.216.34]/", OPEN) == "http://[::ffff:5db8:d822]/"


def test_the_pointer_is_the_callers() -> None:
    refused("ftp://x.example/", pointer="/url")


def test_is_public() -> None:
    assert is_public("93.184.216.34") and is_public("2606:4700::1111")
    assert not is_public("127.0.0.1") and not is_public("fe80::1%eth0") and not is_public("::ffff:192.168.0.1")


class FixedResolver(AbstractResolver):
    """Answers every name with the given addresses, as DNS under someone else's control might."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                              proto=0, flags=0) for a in self.addresses]

    async def close(self) -> None:
        pass


async def test_the_resolver_refuses_localhost() -> None:
    resolver = PublicResolver()
    try:
        with pytest.raises(OSError, match="private"):
            await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
    finally:
        await resolver.close()


async def test_the_resolver_drops_private_answers_and_keeps_public_ones() -> None:
    mixed = PublicResolver(FixedResolver("10.0.0.7", "93.184.216.34", "::1", "2606:4700::1111"))
    assert [r["host"] for r in await mixed.resolve("rebind.example", 443)] == ["93.184.216.34", "2606:4700::1111"]
    rebound = PublicResolver(FixedResolver("169.254.169.254", "::ffff:127.0.0.1"))
    with pytest.raises(OSError):
        await rebound.resolve("rebind.example", 443)
