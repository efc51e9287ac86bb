"""Opaque page cursors: the (created_at, id) of the last item of a page, newest first."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

from executor.errors import RequestInvalid


def encode_cursor(created_at: datetime, item_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{item_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raises ValueError for a cursor this module did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"bad cursor: {exc}") from None
    created, _, ident = raw.partition("|")
    instant = datetime.fromisoformat(created)
    if instant.tzinfo is None:
        raise ValueError("bad cursor: no time zone")
    return instant, uuid.UUID(ident)


def query_invalid(name: str, detail: str) -> RequestInvalid:
    """A query parameter refused: pointed at as `?name`, as the request checks point at it."""
    return RequestInvalid(f"?{name}: {detail}", errors=[{"pointer": f"?{name}", "detail": detail}])


def parse_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The `cursor` query parameter of a list route, parsed (422 `?cursor` if not one of ours)."""
    try:
        return decode_cursor(cursor) if cursor else None
    except ValueError:
        raise query_invalid("cursor", "not a cursor this service gave") from None


def page_filters(agent_id: str | None,
                 cursor: str | None) -> tuple[uuid.UUID | None, tuple[datetime, uuid.UUID] | None]:
    """The `agent_id` and `cursor` query parameters of a list route, parsed (422 if bad, each
    refused one pointed at as `?agent_id` or `?cursor`)."""
    errors: list[dict[str, Any]] = []
    agent = None
    try:
        agent = uuid.UUID(agent_id) if agent_id else None
    except ValueError:
        errors.append({"pointer": "?agent_id", "detail": "not an agent id"})
    before = None
    try:
        before = parse_cursor(cursor)
    except RequestInvalid as exc:
        errors += exc.errors or []
    if errors:
        raise RequestInvalid("; ".join(f"{e['pointer']}: {e['detail']}" for e in errors), errors=errors)
    return agent, before
