"""Sending the webhook outbox: claim what is due, POST it signed, record the attempt, back off.

Delivery is at least once. A dispatcher leases what it claims (storage.webhooks.claim_due);
if it dies mid-attempt the lease runs out and any dispatcher, this one restarted or another
process, sends the delivery again with the same webhook-id. Several dispatchers may run on
one database: a lease is held by one at a time. Nothing here ever changes an execution.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import tenacity

from executor.errors import RequestInvalid
from executor.observability.metrics import Metrics
from executor.records.webhooks import DueDelivery
from executor.settings import Settings
from executor.storage import webhooks as webhook_sql
from executor.webhooks import signing
from executor.webhooks.targets import PublicResolver, check_url

log = logging.getLogger(__name__)

_BODY_READ_BYTES = 4096  # of a receiver's answer: read so the connection is usable, then dropped
_USER_AGENT = "executor-webhooks/1"


class WebhookDispatcher:
    def __init__(self, db: asyncpg.Pool, settings: Settings, *, batch_size: int = 16,
                 lease_s: float | None = None, metrics: Metrics | None = None) -> None:
        self.db = db
        self.metrics = metrics if metrics is not None else Metrics()
        self.settings = settings
        self.batch_size = batch_size
        # Long enough that a live attempt (bounded by the timeout) always ends within its lease:
        # an expired lease lets another dispatcher send the same delivery again.
        self.lease_s = lease_s if lease_s is not None else 2 * settings.webhook_timeout_s + 30.0
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # base * 2^(n-1), capped, plus up to one base of jitter so that deliveries failing together
        # (a receiver down) do not all come back at the same instant.
        self._backoff = (tenacity.wait_exponential(multiplier=settings.webhook_retry_base_s,
                                                   max=settings.webhook_retry_max_s)
                         + tenacity.wait_random(0, settings.webhook_retry_base_s))
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Finish the attempts under way (each bounded by the timeout), then give up the leases left."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=self.settings.webhook_timeout_s + 5.0)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        try:
            await webhook_sql.release(self.db, locked_by=self.instance)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not give up webhook leases (they expire by themselves): %s", exc)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def notify(self) -> None:
        """Look for due deliveries now (the finisher calls this after committing one)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Send every delivery due now, up to one batch; returns how many attempts were made."""
        due = await webhook_sql.claim_due(self.db, limit=self.batch_size, lease_s=self.lease_s,
                                          locked_by=self.instance)
        results = await asyncio.gather(*(self._deliver(d) for d in due), return_exceptions=True)
        for delivery, result in zip(due, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                # Unrecorded: the lease will run out and the delivery be tried again.
                log.error("webhook delivery %s: could not record the attempt: %r", delivery.id, result)
        return len(due)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before the batch, so a notify() during it is not lost
            try:
                made = await self.run_once()
            except Exception:
                log.exception("webhook dispatch failed; trying again in %.1f s", self.settings.webhook_poll_s)
                made = 0
            if made >= self.batch_size and not self._stopping:
                continue  # a full batch: more may be due already
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.webhook_poll_s)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Names are resolved through PublicResolver, which drops private addresses each time a
            # name is looked up; literal addresses never reach a resolver and are checked by check_url.
            resolver = None if self.settings.webhook_allow_private else PublicResolver()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=resolver, limit=self.batch_size * 2),
                timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s),
                headers={"User-Agent": _USER_AGENT}, trust_env=False)
        return self._session

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1, 2, ...)."""
        state = tenacity.RetryCallState(tenacity.AsyncRetrying(), fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        return min(float(self._backoff(state)), self.settings.webhook_retry_max_s)

    async def _deliver(self, delivery: DueDelivery) -> None:
        attempt = delivery.attempts + 1
        started_at = datetime.now(UTC)
        clock = time.monotonic()
        status_code, error = await self._post(delivery)
        duration_s = time.monotonic() - clock
        status = await webhook_sql.record_attempt(
            self.db, delivery.id, locked_by=self.instance, started_at=started_at, duration_ms=int(duration_s * 1000),
            status_code=status_code, error=error, max_attempts=self.settings.webhook_max_attempts,
            retry_in_s=self.retry_delay(attempt))
        self.metrics.webhook_attempt(duration_s, ok=error is None, gave_up=error is not None and status == "failed")
        where = _loggable(delivery.url)
        if error is None:
            log.info("webhook %s delivered to %s (attempt %d, HTTP %s)", delivery.id, where, attempt, status_code)
        else:
            log.warning("webhook %s to %s: attempt %d failed (%s); now %s", delivery.id, where, attempt, error, status)

    async def _post(self, delivery: DueDelivery) -> tuple[int | None, str | None]:
        """(HTTP status or None, error or None) of one POST of the stored payload."""
        try:
            # Again at delivery: the rules may have changed since the URL was stored, and a literal
            # address never goes through the resolver.
            url = check_url(delivery.url, self.settings)
        except RequestInvalid as exc:
            return None, f"refused target: {exc.errors[0]['detail'] if exc.errors else exc.detail}"
        headers = signing.headers(delivery.secret, str(delivery.id), int(time.time()), delivery.payload)
        try:
            async with self._client().post(url, data=delivery.payload, headers=headers,
                                           allow_redirects=False) as response:
                await response.content.read(_BODY_READ_BYTES)
                status = response.status
                location = response.headers.get("Location")
        except TimeoutError:
            return None, f"timed out after {self.settings.webhook_timeout_s:g} s"
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"[:1000]
        if 200 <= status < 300:
            return status, None
        if 300 <= status < 400:
            # Not followed: the target would then be a URL nobody checked.
            return status, f"HTTP {status}: a redirect (to {_loggable(location or '?')}) is not followed"
        return status, f"HTTP {status}"


def _loggable(url: str) -> str:
    """The URL without its query, which may carry a receiver's token."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "?"
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
