"""RFC 3339 instants as requests carry them (`expires_at`, `?created_since`, ...).

A time without an offset names no instant (it depends on the reader's zone): refused. Every
instant is kept in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from executor.errors import RequestInvalid


def _invalid(pointer: str, detail: str) -> RequestInvalid:
    return RequestInvalid(f"{pointer.lstrip('/')}: {detail}", errors=[{"pointer": pointer, "detail": detail}])


def parse_instant(raw: Any, pointer: str) -> datetime | None:
    """`raw` as a UTC datetime, None for None; a 422 pointing at `pointer` for anything else."""
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00")) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if value is None:
        raise _invalid(pointer, "an RFC 3339 date-time such as 2027-01-31T00:00:00Z")
    if value.tzinfo is None:
        raise _invalid(pointer, "the date-time needs an offset (Z or +hh:mm)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00:00-05:00 is past datetime.max in UTC
        raise _invalid(pointer, "out of range") from None
