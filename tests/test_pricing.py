"""Costs against values computed by hand, and the pricing a registration may carry."""

from __future__ import annotations

import pytest

from executor.errors import RequestInvalid
from executor.pricing import Cost, MeteredUsage, Pricing, cost_of, parse_pricing

USAGE = MeteredUsage(wall_ms=1500, cpu_ms=1234, peak_memory_bytes=100 * 2**20 + 1, memory_limit_mb=256)


def test_per_call_only() -> None:
    assert cost_of(Pricing("USD", per_call=25), USAGE) == Cost("USD", 2, 25, False)


def test_per_cpu_second_rounds_up_once() -> None:
    # 1234 ms × 3 / 1000 = 3.702 → 4
    assert cost_of(Pricing("USD", per_cpu_second=3), USAGE).amount == 4
    # 1234 ms × 1000 / 1000 = 1234 exactly: no rounding
    assert cost_of(Pricing("USD", per_cpu_second=1000), USAGE).amount == 1234


def test_per_mb_second_is_the_memory_limit_over_the_wall_time() -> None:
    # 256 MiB × 1.5 s = 384 MB-s; × 2 = 768
    assert cost_of(Pricing("USD", per_mb_second=2), USAGE).amount == 768


def test_per_peak_mb() -> None:
    # (100 MiB + 1 byte) × 7 = 700 + 7/2^20 → 701
    assert cost_of(Pricing("USD", per_peak_mb=7), USAGE).amount == 701


def test_parts_are_summed_exactly_before_the_one_rounding() -> None:
    # 10 + 3.702 + 0 + (100 + 1/2^20) × 1 = 113.70200095… → 114 (rounding each part would give 115)
    pricing = Pricing("EUR", per_call=10, per_cpu_second=3, per_peak_mb=1)
    assert cost_of(pricing, USAGE) == Cost("EUR", 2, 114, False)


def test_the_cap_holds_and_says_so() -> None:
    pricing = Pricing("USD", per_call=10, per_cpu_second=1000, cap=500)
    assert cost_of(pricing, USAGE) == Cost("USD", 2, 500, True)
    assert cost_of(Pricing("USD", per_call=10, cap=500), USAGE) == Cost("USD", 2, 10, False)
    assert cost_of(Pricing("USD", per_call=500, cap=500), USAGE) == Cost("USD", 2, 500, False)


def test_unmeasured_figures_count_as_zero_and_uncharged_runs_cost_nothing() -> None:
    blind = MeteredUsage(wall_ms=None, cpu_ms=None, peak_memory_bytes=None, memory_limit_mb=128)
    assert cost_of(Pricing("USD", per_call=3, per_cpu_second=9), blind).amount == 3
    assert cost_of(Pricing("USD", per_call=3), USAGE, charged=False) == Cost("USD", 2, 0, False)
    assert cost_of(None, USAGE) is None


def test_finer_units_through_decimals() -> None:
    pricing = parse_pricing({"currency": "USD", "decimals": 6, "per_cpu_second": 15})
    # 1234 ms × 15 µUSD/s = 18.51 → 19 µUSD
    assert cost_of(pricing, USAGE) == Cost("USD", 6, 19, False)


@pytest.mark.parametrize("raw, pointer", [
    ([], "/pricing"),
    ({"per_call": 1}, "/pricing/currency"),
    ({"currency": "usd"}, "/pricing/currency"),
    ({"currency": "USD", "per_call": 1.0}, "/pricing/per_call"),
    ({"currency": "USD", "per_call": 0.5}, "/pricing/per_call"),
    ({"currency": "USD", "per_call": -1}, "/pricing/per_call"),
    ({"currency": "USD", "per_call": True}, "/pricing/per_call"),
    ({"currency": "USD", "per_call": 2**53}, "/pricing/per_call"),
    ({"currency": "USD", "cap": "10"}, "/pricing/cap"),
    ({"currency": "USD", "decimals": 19}, "/pricing/decimals"),
    ({"currency": "USD", "per_token": 1}, "/pricing/per_token"),
])
def test_bad_pricing_is_refused_with_its_pointer(raw, pointer) -> None:
    with pytest.raises(RequestInvalid) as caught:
        parse_pricing(raw)
    assert caught.value.errors[0]["pointer"] == pointer


def test_pricing_round_trips() -> None:
    pricing = parse_pricing({"currency": "USD", "per_call": 1, "cap": None})
    assert pricing == Pricing("USD", per_call=1)
    assert Pricing.from_dict(pricing.to_dict()) == pricing
    assert parse_pricing(None) is None


def test_per_egress_request() -> None:
    """Each request a task sent through the egress gateway, refused ones too: each cost the gateway work."""
    with_egress = MeteredUsage(wall_ms=1500, cpu_ms=0, peak_memory_bytes=0, memory_limit_mb=256, egress_requests=4)
    assert cost_of(Pricing("USD", per_call=2, per_egress_request=3), with_egress).amount == 14
    assert cost_of(Pricing("USD", per_egress_request=3), USAGE).amount == 0  # none sent
    assert parse_pricing({"currency": "USD", "per_egress_request": 5}) == Pricing("USD", per_egress_request=5)
