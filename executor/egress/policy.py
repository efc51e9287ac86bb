"""What an agent version declares for egress, checked at registration (pure).

An agent version may declare up to 16 upstreams, each a name the task addresses, an https URL
prefix the gateway forwards to, the methods allowed, and optionally a header the gateway injects
from one of the agent's secrets; plus caps for a whole task (requests, bytes each way, time).
Which hosts may be declared at all is the operator's (EXECUTOR_EGRESS_ALLOWED_HOSTS): unset or
empty, every declaration is refused. The result is immutable with the version; `to_dict` is the
stored form (JSON), `from_dict` reads it back.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from executor.errors import RequestInvalid
from executor.hostlists import host_listed, parse_hosts

MIB = 2**20
MAX_UPSTREAMS = 16
MAX_URL_LENGTH = 2048
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_METHODS = ("GET",)  # least privilege: a declaration that names no method may only read

# (default, maximum) of each cap; time_s has the task's own time limit as both.
REQUESTS = (100, 10_000)
BYTES_OUT = (1 * MIB, 64 * MIB)
BYTES_IN = (10 * MIB, 256 * MIB)

NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
HEADER_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
# What a URL path prefix may hold: RFC 3986 pchar and "/", percent-encodings checked apart.
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_FORMAT_CHARS = re.compile(r"[\x20-\x7e]*")

# Headers an injection may not set: the ones that frame the message or steer a proxy, which the
# gateway owns (docs/egress.md, "Headers").
DENIED_HEADERS = frozenset({
    "host", "content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive",
    "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "trailers",
    "upgrade", "expect", "http2-settings",
})


@dataclass(frozen=True)
class Injection:
    """The header the gateway sets on every request to an upstream: `format` with its one `{}`
    replaced by the value of the agent's secret `secret`."""

    header: str
    secret: str
    format: str = "{}"

    def render(self, value: str) -> str:
        return self.format.replace("{}", value, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"header": self.header, "secret": self.secret, "format": self.format}


@dataclass(frozen=True)
class Upstream:
    name: str
    url: str  # https://host[:port][/prefix], scheme and host lower-cased, otherwise as declared
    methods: tuple[str, ...]
    inject: Injection | None = None

    @property
    def origin(self) -> str:
        """https://host[:port]"""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def prefix(self) -> str:
        """The declared path prefix ("" for none), as declared (a trailing "/" kept)."""
        return urlsplit(self.url).path

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "methods": list(self.methods),
                "inject": self.inject.to_dict() if self.inject else None}


@dataclass(frozen=True)
class EgressLimits:
    requests: int
    bytes_out: int
    bytes_in: int
    time_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "bytes_out": self.bytes_out, "bytes_in": self.bytes_in,
                "time_s": self.time_s}


@dataclass(frozen=True)
class EgressPolicy:
    upstreams: tuple[Upstream, ...]
    limits: EgressLimits

    def upstream(self, name: str) -> Upstream | None:
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream
        return None

    def to_dict(self) -> dict[str, Any]:
        """The stored form (JSON)."""
        return {"upstreams": [upstream.to_dict() for upstream in self.upstreams], "limits": self.limits.to_dict()}

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> EgressPolicy:
        """Read back what `to_dict` stored (it was checked when declared)."""
        upstreams = tuple(
            Upstream(
                name=item["name"], url=item["url"], methods=tuple(item["methods"]),
                inject=Injection(**item["inject"]) if item.get("inject") else None,
            )
            for item in stored["upstreams"]
        )
        limits = stored["limits"]
        return cls(upstreams, EgressLimits(int(limits["requests"]), int(limits["bytes_out"]),
                                           int(limits["bytes_in"]), float(limits["time_s"])))


def task_environment(policy: EgressPolicy, socket_path: str) -> dict[str, str]:
    """The variables a task with egress gets: the socket, and one base URL per upstream
    (EXECUTOR_EGRESS_URL_<NAME>, the name upper-cased with "-" as "_")."""
    env = {"EXECUTOR_EGRESS_SOCKET": socket_path}
    for upstream in policy.upstreams:
        env["EXECUTOR_EGRESS_URL_" + upstream.name.upper().replace("-", "_")] = f"http://{upstream.name}"
    return env


def host_allowed(host: str, allowed_hosts: str | None) -> bool:
    """Whether EXECUTOR_EGRESS_ALLOWED_HOSTS admits `host` (executor/hostlists.py). Unset or
    empty admits nothing; so does a bare `*`."""
    return host_listed(host, parse_hosts(allowed_hosts))


def parse_egress(egress: Any, limits: Any, *, allowed_hosts: str | None, max_time_s: float,
                 pointer: str = "/egress", limits_pointer: str = "/egress_limits") -> EgressPolicy | None:
    """A registration's `egress` list and `egress_limits` object, checked field by field.

    None (or an empty list) is no egress at all; caps without upstreams are refused. Errors are
    RequestInvalid with the JSON pointer of the field (`/egress/0/url`)."""
    if egress is None or egress == []:
        if limits is not None:
            raise _invalid(limits_pointer, "caps without any declared upstream: declare egress, or omit them")
        return None
    if not isinstance(egress, list):
        raise _invalid(pointer, "a list of upstreams ({name, url, methods, inject})")
    if len(egress) > MAX_UPSTREAMS:
        raise _invalid(pointer, f"at most {MAX_UPSTREAMS} upstreams")
    upstreams: list[Upstream] = []
    for index, item in enumerate(egress):
        upstream = _upstream(item, f"{pointer}/{index}", allowed_hosts)
        if any(other.name == upstream.name for other in upstreams):
            raise _invalid(f"{pointer}/{index}/name", f"{upstream.name!r} is declared twice")
        upstreams.append(upstream)
    return EgressPolicy(tuple(upstreams), _limits(limits, limits_pointer, max_time_s))


def _upstream(item: Any, pointer: str, allowed_hosts: str | None) -> Upstream:
    if not isinstance(item, dict):
        raise _invalid(pointer, "an object {name, url, methods, inject}")
    unknown = sorted(set(item) - {"name", "url", "methods", "inject"})
    if unknown:
        raise _invalid(f"{pointer}/{unknown[0]}", "unknown upstream field")
    name = item.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise _invalid(f"{pointer}/name", "required: lower-case letters, digits and '-', starting with a letter, "
                                          "at most 63 characters")
    url = _url(item.get("url"), f"{pointer}/url", allowed_hosts)
    methods = _methods(item.get("methods"), f"{pointer}/methods")
    inject = _injection(item.get("inject"), f"{pointer}/inject")
    return Upstream(name, url, methods, inject)


def _url(raw: Any, pointer: str, allowed_hosts: str | None) -> str:
    if not isinstance(raw, str) or not raw:
        raise _invalid(pointer, "required: an absolute https URL, https://host[:port][/path-prefix]")
    if len(raw) > MAX_URL_LENGTH:
        raise _invalid(pointer, f"at most {MAX_URL_LENGTH} characters")
    if any(ord(char) <= 0x20 or ord(char) >= 0x7F for char in raw) or "\\" in raw:
        raise _invalid(pointer, "only printable ASCII, no spaces or backslashes (percent-encode the rest)")
    if "?" in raw or "#" in raw:
        raise _invalid(pointer, "no query or fragment: the URL is a prefix")
    parts = urlsplit(raw)
    if parts.scheme.lower() != "https":
        raise _invalid(pointer, "the scheme must be https")
    if not raw.lower().startswith("https://"):
        raise _invalid(pointer, "an absolute URL: https://host[:port][/path-prefix]")
    if "@" in parts.netloc:
        raise _invalid(pointer, "no user information (credentials go through inject and secrets)")
    try:
        port = parts.port
    except ValueError:
        raise _invalid(pointer, "the port must be an integer from 1 to 65535") from None
    if port == 0 or (parts.netloc.endswith(":") and port is None):
        raise _invalid(pointer, "the port must be an integer from 1 to 65535")
    host = (parts.hostname or "").lower()
    if not _valid_host(host):
        raise _invalid(pointer, "the host must be a DNS name or an IP address")
    if not host_allowed(host, allowed_hosts):
        raise _invalid(pointer, f"host {host!r} is not one the operator allows (EXECUTOR_EGRESS_ALLOWED_HOSTS)")
    path = parts.path
    if not _PATH_CHARS.fullmatch(path) or _PERCENT.search(path):
        raise _invalid(pointer, "the path holds a character that must be percent-encoded, or a bad %-escape")
    segments = path.split("/")[1:] if path else []
    for position, segment in enumerate(segments):
        if (segment == "" and position < len(segments) - 1) or unsafe_segment(segment):
            raise _invalid(pointer, "the path prefix must be normal: no empty, '.' or '..' segments, "
                                    "no encoded '/', '\\' or '%'")
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None:
        netloc += f":{port}"
    return f"https://{netloc}{path}"


def unsafe_segment(segment: str) -> bool:
    """Whether one path segment (as sent, percent-encoded) could move a path elsewhere once a
    server decodes it: a dot segment, even encoded (%2e%2e) or with parameters (`..;x`, which
    some servers read as `..`); an encoded separator (%2f, %5c); a percent that would decode
    again (%25, double encoding); a control character."""
    decoded = unquote(segment, errors="replace") if "%" in segment else segment
    if any(char in decoded for char in "/\\%") or any(ord(char) < 0x20 or ord(char) == 0x7F for char in decoded):
        return True
    return decoded.split(";", 1)[0] in (".", "..")


def _valid_host(host: str) -> bool:
    if not host or len(host) > 253:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    # Not an IP address: a DNS name, and not something the system resolver would read as an
    # IPv4 address in another form (127.1, 0x7f.1, 2130706433).
    if _HOST_NAME.fullmatch(host) is None:
        return False
    last = host.rsplit(".", 1)[-1]
    return not (last.isdigit() or last.startswith("0x"))


def _methods(raw: Any, pointer: str) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_METHODS
    if not isinstance(raw, list) or not raw:
        raise _invalid(pointer, f"a non-empty list of methods among {', '.join(METHODS)}")
    methods: list[str] = []
    for index, method in enumerate(raw):
        if not isinstance(method, str) or method not in METHODS:
            raise _invalid(f"{pointer}/{index}", f"one of {', '.join(METHODS)} (upper-case)")
        if method in methods:
            raise _invalid(f"{pointer}/{index}", f"{method} is listed twice")
        methods.append(method)
    return tuple(methods)


def _injection(raw: Any, pointer: str) -> Injection | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _invalid(pointer, "an object {header, secret, format}")
    unknown = sorted(set(raw) - {"header", "secret", "format"})
    if unknown:
        raise _invalid(f"{pointer}/{unknown[0]}", "unknown inject field")
    header = raw.get("header")
    if not isinstance(header, str) or not HEADER_TOKEN.fullmatch(header):
        raise _invalid(f"{pointer}/header", "required: a header name (an HTTP token, at most 64 characters)")
    if header.lower() in DENIED_HEADERS:
        raise _invalid(f"{pointer}/header", f"{header} is set by the gateway itself and cannot be injected")
    secret = raw.get("secret")
    if not isinstance(secret, str) or not SECRET_NAME.fullmatch(secret):
        raise _invalid(f"{pointer}/secret", "required: the name of one of the agent's secrets")
    template = raw.get("format", "{}")
    if not isinstance(template, str) or len(template) > 256 or not _FORMAT_CHARS.fullmatch(template):
        raise _invalid(f"{pointer}/format", "printable ASCII, at most 256 characters, with one {}")
    if template.count("{}") != 1:
        raise _invalid(f"{pointer}/format", "must hold exactly one {} (where the secret goes)")
    return Injection(header, secret, template)


def _limits(raw: Any, pointer: str, max_time_s: float) -> EgressLimits:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _invalid(pointer, "an object {requests, bytes_out, bytes_in, time_s}")
    unknown = sorted(set(raw) - {"requests", "bytes_out", "bytes_in", "time_s"})
    if unknown:
        raise _invalid(f"{pointer}/{unknown[0]}", "unknown egress cap")
    requests = _integer(raw, "requests", pointer, REQUESTS, minimum=1)
    bytes_out = _integer(raw, "bytes_out", pointer, BYTES_OUT, minimum=0)
    bytes_in = _integer(raw, "bytes_in", pointer, BYTES_IN, minimum=0)
    time_s: float = max_time_s
    if raw.get("time_s") is not None:
        value = raw["time_s"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not 0 < value <= max_time_s:
            raise _invalid(f"{pointer}/time_s", f"a number of seconds above 0, at most {max_time_s:g} "
                                                "(the task's time limit)")
        time_s = float(value)
    return EgressLimits(requests, bytes_out, bytes_in, float(time_s))


def _integer(raw: dict[str, Any], name: str, pointer: str, bounds: tuple[int, int], *, minimum: int) -> int:
    default, maximum = bounds
    value = raw.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise _invalid(f"{pointer}/{name}", f"an integer from {minimum} to {maximum}")
    return value


def _invalid(pointer: str, detail: str) -> RequestInvalid:
    return RequestInvalid(f"{pointer.lstrip('/')}: {detail}", errors=[{"pointer": pointer, "detail": detail}])
