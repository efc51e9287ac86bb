"""What an execution costs, from its agent's pricing and its measured usage (pure logic).

Money is integers only: every rate is a whole number of minor units (10^-decimals
of the currency), the metered parts are summed as an exact fraction, and the sum
is rounded up once to a whole minor unit, then capped. No float ever touches an
amount.

    per_call          charged once per execution
    per_cpu_second    × CPU time (ms / 1000)
    per_mb_second     × the memory limit in MiB × wall time (ms / 1000), as Lambda bills GB-seconds
    per_peak_mb       × measured peak memory (bytes / 2^20)
    per_egress_request × requests the task sent through the egress gateway (docs/egress.md)
    cap               the most one execution costs

An execution the platform failed (`platform_error`) or that never started costs
nothing; every other final execution is charged, whatever the agent's result.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from executor.errors import RequestInvalid

_RATES = ("per_call", "per_cpu_second", "per_mb_second", "per_peak_mb", "per_egress_request")
_CURRENCY = re.compile(r"^[A-Z][A-Z0-9_-]{1,15}$")  # ISO 4217 codes, or a marketplace's own credit unit
_MAX_AMOUNT = 2**53 - 1  # receipts are RFC 8785 JSON: no integer beyond this
MIB = 1024 * 1024


@dataclass(frozen=True)
class Pricing:
    currency: str
    decimals: int = 2  # the amount is in 10^-decimals of the currency
    per_call: int = 0
    per_cpu_second: int = 0
    per_mb_second: int = 0
    per_peak_mb: int = 0
    per_egress_request: int = 0
    cap: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"currency": self.currency, "decimals": self.decimals, "per_call": self.per_call,
                "per_cpu_second": self.per_cpu_second, "per_mb_second": self.per_mb_second,
                "per_peak_mb": self.per_peak_mb, "per_egress_request": self.per_egress_request, "cap": self.cap}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pricing:
        return cls(**data)


@dataclass(frozen=True)
class Cost:
    currency: str
    decimals: int
    amount: int  # minor units
    capped: bool  # the cap lowered it

    def to_dict(self) -> dict[str, Any]:
        return {"currency": self.currency, "decimals": self.decimals, "amount": self.amount, "capped": self.capped}


@dataclass(frozen=True)
class MeteredUsage:
    """The figures a price applies to; a figure that was not measured counts as zero."""

    wall_ms: int | None
    cpu_ms: int | None
    peak_memory_bytes: int | None
    memory_limit_mb: int
    egress_requests: int = 0


def parse_pricing(raw: Any, *, pointer: str = "/pricing") -> Pricing | None:
    """A registration's `pricing` object, checked field by field; None when absent."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _invalid(pointer, "an object with currency and integer rates")
    unknown = sorted(set(raw) - {"currency", "decimals", "cap", *_RATES})
    if unknown:
        raise _invalid(f"{pointer}/{unknown[0]}", "unknown pricing field")
    currency = raw.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise _invalid(f"{pointer}/currency", "required: an upper-case currency code such as USD")
    values: dict[str, Any] = {"currency": currency}
    for name in ("decimals", "cap", *_RATES):
        if name not in raw or (name == "cap" and raw[name] is None):
            continue
        value = raw[name]
        # A float is refused even when whole (1.0): money is integers only.
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_AMOUNT:
            raise _invalid(f"{pointer}/{name}", f"a non-negative integer (minor units) up to {_MAX_AMOUNT}")
        values[name] = value
    if values.get("decimals", 2) > 18:
        raise _invalid(f"{pointer}/decimals", "at most 18")
    return Pricing(**values)


def cost_of(pricing: Pricing | None, usage: MeteredUsage, *, charged: bool = True) -> Cost | None:
    """The cost in minor units: the exact sum of the parts, rounded up once, then capped."""
    if pricing is None:
        return None
    if not charged:
        return Cost(pricing.currency, pricing.decimals, 0, False)
    exact = (
        Fraction(pricing.per_call)
        + Fraction(pricing.per_cpu_second * (usage.cpu_ms or 0), 1000)
        + Fraction(pricing.per_mb_second * usage.memory_limit_mb * (usage.wall_ms or 0), 1000)
        + Fraction(pricing.per_peak_mb * (usage.peak_memory_bytes or 0), MIB)
        + pricing.per_egress_request * usage.egress_requests
    )
    amount = math.ceil(exact)
    capped = pricing.cap is not None and amount > pricing.cap
    amount = min(amount, pricing.cap) if pricing.cap is not None else amount
    return Cost(pricing.currency, pricing.decimals, min(amount, _MAX_AMOUNT), capped)


def _invalid(pointer: str, detail: str) -> RequestInvalid:
    return RequestInvalid(f"{pointer.lstrip('/')}: {detail}", errors=[{"pointer": pointer, "detail": detail}])
