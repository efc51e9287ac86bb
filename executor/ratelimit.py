"""Rate limits on submissions, per user and per service, kept in Redis by GCRA.

GCRA (generic cell rate algorithm) keeps one number per bucket, the
theoretical arrival time TAT, instead of a counter and a window. With the
emission interval T = 1 / per_second and the burst B, a request of cost n at
time `now` is

    tat     = max(stored TAT or now, now)
    new_tat = tat + n * T
    allowed   iff  new_tat - now <= B * T      (then store new_tat)
    otherwise retry after  new_tat - B * T - now

so a fresh bucket allows exactly B immediate requests, then one every T.
Remaining is floor((B * T - (tat - now)) / T) and the bucket is full again
(reset) after tat - now. A key expires once full, so a missing key is a full
bucket and idle users cost nothing.

All buckets of one request are checked and charged in one Lua script, so the
request counts in every bucket or in none, and the clock is Redis' TIME, so
API processes on several hosts agree. Inside Lua every quantity is a whole
number of microseconds: Lua numbers are doubles, exact up to 2**53 us (about
285 years since the epoch), and TATs are written with "%.0f" because Lua's
own tostring keeps only 14 digits. The keys of one call must live on one
Redis server (no cluster slot spreading).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as redis

# ARGV: cost, then (interval_us, burst) per key. Returns allowed (0/1),
# retry_us, then (remaining, reset_us) per key.
_GCRA = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local cost = tonumber(ARGV[1])
local tats, allowed, retry = {}, 1, 0
for i = 1, #KEYS do
  local interval, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or 0), now)
  tats[i] = tat
  local wait = tat + cost * interval - burst * interval - now
  if wait > 0 then
    allowed = 0
    retry = math.max(retry, wait)
  end
end
local out = {allowed, retry}
for i = 1, #KEYS do
  local interval, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local tat = tats[i]
  if allowed == 1 then
    tat = tat + cost * interval
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
  end
  out[#out + 1] = math.max(0, math.floor((burst * interval - (tat - now)) / interval))
  out[#out + 1] = tat - now
end
return out
"""

# Caps burst / per_second so that now + 2 * B * T stays an exact double in Lua.
_MAX_WINDOW_S = 10**8


@dataclass(frozen=True)
class Rate:
    """A policy: `per_second` sustained, up to `burst` at once."""

    name: str
    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not self.name or not all(" " <= c <= "~" for c in self.name):
            raise ValueError(f"rate name must be non-empty printable ASCII: {self.name!r}")
        if not (math.isfinite(self.per_second) and self.per_second > 0):
            raise ValueError(f"per_second must be a finite number > 0: {self.per_second!r}")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1: {self.burst!r}")
        if self.burst / self.per_second > _MAX_WINDOW_S:
            raise ValueError(f"burst / per_second must be at most {_MAX_WINDOW_S} s")

    @property
    def interval_us(self) -> int:
        """T in whole microseconds (at least 1, so at most a million per second)."""
        return max(1, round(1_000_000 / self.per_second))

    @property
    def window_s(self) -> int:
        """Whole seconds an empty bucket takes to refill, at least 1 (the policy's `w`)."""
        return max(1, -(-self.burst * self.interval_us // 1_000_000))


@dataclass(frozen=True)
class Bucket:
    """One counted subject, e.g. key "user:alice" under Rate("user", ...)."""

    key: str
    rate: Rate


@dataclass(frozen=True)
class LimitState:
    """A bucket as the decision left it."""

    rate: Rate
    remaining: int
    reset_s: float


@dataclass(frozen=True)
class Decision:
    """Allowed in every bucket, or refused; retry_after_s is the longest wait of the blocking buckets."""

    allowed: bool
    retry_after_s: float
    states: list[LimitState]


class RateLimiter:
    def __init__(self, client: redis.Redis, *, prefix: str = "executor:rl:") -> None:
        self._redis = client
        self.prefix = prefix
        self._script = client.register_script(_GCRA)

    async def acquire(self, buckets: Sequence[Bucket], *, cost: int = 1) -> Decision:
        """All-or-nothing across buckets: a request is counted in every bucket or in none.
        An empty sequence is always allowed (no Redis call).

        A cost above a bucket's burst could never pass, and a key given twice
        would be charged once: both are the caller's bug, so ValueError.
        Redis errors propagate: whether to fail open or closed is the caller's call.
        """
        if not buckets:
            return Decision(True, 0.0, [])
        if cost < 1 or cost > min(b.rate.burst for b in buckets):
            raise ValueError(f"cost must be between 1 and the smallest burst: {cost!r}")
        if len({b.key for b in buckets}) != len(buckets):
            raise ValueError("each bucket key may appear once per call")
        args: list[int] = [cost]
        for bucket in buckets:
            args += [bucket.rate.interval_us, bucket.rate.burst]
        reply = await self._script(keys=[self.prefix + b.key for b in buckets], args=args)
        values = [int(v) for v in reply]
        states = [
            LimitState(b.rate, values[2 + 2 * i], values[3 + 2 * i] / 1_000_000) for i, b in enumerate(buckets)
        ]
        allowed = values[0] == 1
        return Decision(allowed, 0.0 if allowed else values[1] / 1_000_000, states)


def _sf_string(value: str) -> str:
    """A structured-field String (RFC 8941 §3.3.3); Rate already keeps names printable ASCII."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def headers(decision: Decision) -> dict[str, str]:
    """RateLimit-Policy and RateLimit fields per draft-ietf-httpapi-ratelimit-headers-10
    (structured fields), plus Retry-After (integer seconds, rounded up, >= 1) when refused.

    One list item per bucket, in the decision's order: the policy's quota q is
    the burst and w the seconds it takes to refill; r is what remains, t the
    whole seconds until the bucket is full again.
    """
    out: dict[str, str] = {}
    if decision.states:
        out["RateLimit-Policy"] = ", ".join(
            f"{_sf_string(s.rate.name)};q={s.rate.burst};w={s.rate.window_s}" for s in decision.states
        )
        out["RateLimit"] = ", ".join(
            f"{_sf_string(s.rate.name)};r={s.remaining};t={math.ceil(s.reset_s)}" for s in decision.states
        )
    if not decision.allowed:
        out["Retry-After"] = str(max(1, math.ceil(decision.retry_after_s)))
    return out
