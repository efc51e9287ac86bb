"""Each caller's webhook endpoint (a default URL and the secret its deliveries are signed
with), and the deliveries made for an execution. The dispatcher (dispatcher.py) sends them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from executor.errors import Conflict, NotFound, RequestInvalid
from executor.pagination import encode_cursor, parse_cursor
from executor.records.webhooks import Delivery, Endpoint
from executor.settings import Settings
from executor.storage import webhooks as webhook_sql
from executor.webhooks import signing
from executor.webhooks.targets import check_url


class WebhookEndpoints:
    """An endpoint is made on first read, with a fresh secret; every call that may create one
    hands storage a new secret, used only if it does."""

    def __init__(self, db: asyncpg.Pool, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def get(self, owner: str) -> Endpoint:
        """The owner's endpoint, made (with no URL) if it has none yet."""
        return await webhook_sql.ensure_endpoint(self.db, owner, signing.new_secret())

    async def update(self, owner: str, body: Any) -> Endpoint:
        """PUT /v1/webhooks/endpoint: `{"url": string or null}` sets the default URL (checked as
        every webhook URL is) or, with null, removes it."""
        if not isinstance(body, dict):
            raise RequestInvalid("the body must be an object {\"url\": string or null}",
                                 errors=[{"pointer": "", "detail": "an object"}])
        unknown = sorted(set(body) - {"url"})
        if unknown:
            raise RequestInvalid(f"unknown fields: {', '.join(unknown)}",
                                 errors=[{"pointer": f"/{name}", "detail": "unknown field"} for name in unknown])
        if "url" not in body:
            raise RequestInvalid("url is required (null removes it)",
                                 errors=[{"pointer": "/url", "detail": "required"}])
        url = None if body["url"] is None else check_url(body["url"], self.settings, pointer="/url")
        return await webhook_sql.set_endpoint_url(self.db, owner, url, signing.new_secret())

    async def rotate(self, owner: str) -> Endpoint:
        """A new signing secret: every attempt from now on, retries of older deliveries included, is signed with it."""
        return await webhook_sql.rotate_secret(self.db, owner, signing.new_secret())

    async def pending_count(self) -> int | None:
        """Deliveries not yet delivered nor given up; None when PostgreSQL does not answer within
        2 s (a metrics scrape must not fail for it)."""
        try:
            return await asyncio.wait_for(webhook_sql.count_pending(self.db), 2.0)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None

    async def deliveries(self, execution_id: uuid.UUID, *, limit: int,
                         cursor: str | None) -> tuple[list[Delivery], str | None]:
        """A page of one execution's deliveries, oldest first, with every attempt made (the caller
        checks it may see it); the cursor is the last delivery's (created_at, id)."""
        after = parse_cursor(cursor)
        found = await webhook_sql.deliveries_of(self.db, execution_id, limit=limit, after=after)
        return found, encode_cursor(found[-1].created_at, found[-1].id) if len(found) == limit else None

    async def resend(self, execution_id: uuid.UUID, delivery_id: str, *, owner: str | None) -> Delivery:
        """Queue a failed delivery of the execution again, due now: one more attempt, numbered after
        the ones it keeps (a failed one makes it failed again). `owner` None: the caller may resend
        any delivery (an operator); else only one signed with its own endpoint, other ids being
        unknown to it. NotFound when there is no such delivery, Conflict when it is not failed."""
        try:
            parsed = uuid.UUID(delivery_id)
        except ValueError:
            raise NotFound(f"no webhook delivery {delivery_id!r} for this execution") from None
        found = await webhook_sql.deliveries_of(self.db, execution_id, only=parsed)
        if not found or (owner is not None and found[0].endpoint_owner != owner):
            raise NotFound(f"no webhook delivery {delivery_id!r} for this execution")
        if not await webhook_sql.requeue_failed(self.db, execution_id, parsed):
            # Pending or delivered (maybe since the read above): only a failed delivery is resent.
            (now,) = await webhook_sql.deliveries_of(self.db, execution_id, only=parsed)
            raise Conflict(f"the delivery is {now.status}, not failed: only a failed delivery is resent")
        (delivery,) = await webhook_sql.deliveries_of(self.db, execution_id, only=parsed)
        return delivery
