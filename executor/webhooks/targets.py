"""Where webhooks may go: the URL rules checked when a URL is configured, and again at delivery.

A webhook is a request this service makes on a caller's behalf, so an unchecked URL would let
any caller reach what only this host can reach (its loopback, the private network, a cloud
metadata address). The URL is refused when it names such an address; a host *name* is
checked again each time it is resolved (`PublicResolver`), because what a name resolves to
can change between the check and the delivery (DNS rebinding).
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from executor.errors import RequestInvalid
from executor.hostlists import host_listed, parse_hosts
from executor.settings import Settings

MAX_URL_LENGTH = 2048
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _refuse(pointer: str, detail: str) -> RequestInvalid:
    return RequestInvalid(f"the webhook URL is refused: {detail}", errors=[{"pointer": pointer, "detail": detail}])


def ip_literal(host: str) -> IPAddress | None:
    """The address a host names literally, in any form the system resolver would take as one
    (`127.1` and `2130706433` are 127.0.0.1 to getaddrinfo, so they are to us too)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def is_public(address: IPAddress | str) -> bool:
    """Whether a webhook may reach this address when private addresses are not allowed."""
    if isinstance(address, str):
        address = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address carried in IPv6 is judged as itself: ::ffff:127.0.0.1 is loopback.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return is_public(embedded)
    return not (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
                or address.is_reserved or address.is_unspecified or not address.is_global)


def _allowed_hosts(settings: Settings) -> list[str] | None:
    return parse_hosts(settings.webhook_allowed_hosts) or None


def host_allowed(host: str, allowed: list[str] | None) -> bool:
    """`host` is listed (executor/hostlists.py); no list (None) allows any host."""
    return allowed is None or host_listed(host, allowed)


def check_url(url: Any, settings: Settings, *, pointer: str = "/webhook_url") -> str:
    """The URL, normalised (lower-case scheme and host, `/` for an empty path), or RequestInvalid (422)."""
    if not isinstance(url, str):
        raise _refuse(pointer, "must be a string")
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(pointer, f"longer than {MAX_URL_LENGTH} characters")
    # urlsplit silently drops tabs and newlines (as browsers do): refuse them rather than
    # send to a URL other than the one written.
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url) or "\\" in url:
        raise _refuse(pointer, "contains whitespace, control characters or a backslash")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(pointer, f"not a valid URL ({exc})") from None
    schemes = ("https",) if settings.webhook_require_https else ("http", "https")
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise _refuse(pointer, f"the scheme must be {' or '.join(schemes)}")
    if "@" in parts.netloc:
        raise _refuse(pointer, "credentials (user:password@) are not allowed in the URL")
    if port == 0:
        raise _refuse(pointer, "port 0 is not a port one can connect to")
    if parts.fragment or url.endswith("#"):
        raise _refuse(pointer, "a fragment (#...) is not allowed")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise _refuse(pointer, "the URL has no host")
    address = ip_literal(host)
    if address is not None:
        host = f"[{address.compressed}]" if address.version == 6 else address.compressed
    else:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise _refuse(pointer, "the host is not a valid domain name") from None
        if not _HOST_NAME.fullmatch(host):
            # Percent-escapes and other oddities some parsers decode and others do not.
            raise _refuse(pointer, "the host is not a valid domain name")
    if not host_allowed(host.strip("[]"), _allowed_hosts(settings)):
        raise _refuse(pointer, "this host is not in the operator's list of allowed webhook hosts")
    if address is not None and not settings.webhook_allow_private and not is_public(address):
        raise _refuse(pointer, "the host is a private, loopback, link-local or reserved address")
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


class PublicResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops every address `is_public` refuses;
    a name left with none fails as an OSError, which aiohttp reports as a connection error."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept = [result for result in results if is_public(result["host"])]
        if not kept:
            # With an errno, so aiohttp's ClientConnectorError shows this message (its strerror).
            raise OSError(errno.EACCES, f"{host} resolves only to private, loopback or reserved addresses")
        return kept

    async def close(self) -> None:
        await self._inner.close()
