"""Opaque page cursors: the (created_at, id) of the last item of a page, newest first."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

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
    return datetime.fromisoformat(created), uuid.UUID(ident)


def page_filters(agent_id: str | None,
                 cursor: str | None) -> tuple[uuid.UUID | None, tuple[datetime, uuid.UUID] | None]:
    """The `agent_id` and `cursor` query parameters of a list route, parsed (422 if bad)."""
    try:
        return (uuid.UUID(agent_id) if agent_id else None), (decode_cursor(cursor) if cursor else None)
    except ValueError:
        raise RequestInvalid("bad agent_id or cursor",
                             errors=[{"pointer": "query:agent_id|cursor", "detail": "not one of ours"}]) from None
