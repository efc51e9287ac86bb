"""Status events over Redis pub/sub: "this execution reached a final state"
(wakes API requests waiting with ?wait=N), "this execution changed state"
(PENDING → RUNNING, RUNNING → PENDING when a job is put back: wakes live
status streams, which treat a final state as a change too) and "cancel this
execution" (reaches the worker that runs it, whichever process that is).

Pub/sub can drop a message when a connection blips; every waiter also
re-reads PostgreSQL, so a lost event costs latency, never correctness. A waiter
whose subscription stayed up since its last read re-reads rarely (`unbroken_since`):
while a subscriber's connection is up Redis delivers every message to it (a
subscriber that falls behind is disconnected, which counts as a break).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as redis

from executor.records.executions import ExecutionRecord

log = logging.getLogger(__name__)

FINISHED = "executor:finished"
CANCEL = "executor:cancel"
STATE = "executor:state"  # "<execution id> <status>"


@dataclass(frozen=True)
class Finished:
    """What a waiter is woken with: the worker's timing marks when it sent them, and the final
    record itself when this process ran the execution (finished_here)."""

    timing: str | None = None
    record: ExecutionRecord | None = None


class Events:
    def __init__(self, client: redis.Redis, *, waiters: bool = True) -> None:
        """`waiters` False (a worker without the HTTP API): only cancels are listened for, so the
        process does not read two messages per execution that nobody in it waits for."""
        self._redis = client
        self._channels = (FINISHED, CANCEL, STATE) if waiters else (CANCEL,)
        self._waiters: dict[uuid.UUID, set[asyncio.Future[Finished | None]]] = defaultdict(set)
        self._change_waiters: dict[uuid.UUID, set[asyncio.Future[Finished | None]]] = defaultdict(set)
        self._cancel_handlers: list[Callable[[uuid.UUID], Awaitable[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._subscribed = False
        self.generation = 0  # one more at every (re)subscription

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="events-listener")
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def on_cancel(self, handler: Callable[[uuid.UUID], Awaitable[None]]) -> None:
        self._cancel_handlers.append(handler)

    async def publish_finished(self, execution_id: uuid.UUID) -> None:
        await self._redis.publish(*self.finished_message(execution_id))

    @staticmethod
    def finished_message(execution_id: uuid.UUID, timing: str | None = None) -> tuple[str, str]:
        """(channel, message) of publish_finished, for a caller that sends it in a transaction of its own;
        `timing`, the worker's marks (observability/timing.py), follows the id after a space."""
        return FINISHED, f"{execution_id} {timing}" if timing else str(execution_id)

    async def publish_cancel(self, execution_id: uuid.UUID) -> None:
        await self._redis.publish(CANCEL, str(execution_id))

    async def publish_state(self, execution_id: uuid.UUID, status: str) -> None:
        """A change that is not final (a final state is published with publish_finished)."""
        await self._redis.publish(STATE, f"{execution_id} {status}")

    def unbroken_since(self, generation: int) -> bool:
        """True while the subscription of that generation is still the one up: no message
        published since it began can have been missed."""
        return self._subscribed and self.generation == generation

    def finished_here(self, execution_id: uuid.UUID, record: ExecutionRecord, timing: str | None = None) -> None:
        """The end of an execution this process ran, committed: its waiters here get the final
        record at once (no Redis round trip, no PostgreSQL read); other processes hear of it
        through the FINISHED event published with the job's ack."""
        for waiters in (self._waiters, self._change_waiters):
            for future in waiters.get(execution_id, ()):
                if not future.done():
                    future.set_result(Finished(timing, record))

    def waiter(self, execution_id: uuid.UUID) -> asyncio.Future[Finished | None]:
        """A future resolved when this id's end is heard of (with what finished_here or the
        FINISHED event told: None after a lost subscription); call discard() after use."""
        future: asyncio.Future[Finished | None] = asyncio.get_running_loop().create_future()
        self._waiters[execution_id].add(future)
        return future

    def change_waiter(self, execution_id: uuid.UUID) -> asyncio.Future[Finished | None]:
        """A future resolved at this id's next STATE or FINISHED event; call discard() after use."""
        future: asyncio.Future[Finished | None] = asyncio.get_running_loop().create_future()
        self._change_waiters[execution_id].add(future)
        return future

    def discard(self, execution_id: uuid.UUID, future: asyncio.Future[Finished | None]) -> None:
        """Forget a future of waiter() or change_waiter()."""
        for waiters in (self._waiters, self._change_waiters):
            futures = waiters.get(execution_id)
            if futures is not None:
                futures.discard(future)
                if not futures:
                    del waiters[execution_id]

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(*self._channels)
                    async for message in pubsub.listen():
                        if message["type"] == "subscribe" and message["data"] == 1:
                            # The first confirmation of a subscription, ours or redis-py's own after
                            # it reconnected: what was published while the connection was down is
                            # lost, so every waiter reads PostgreSQL again now.
                            self.generation += 1
                            self._subscribed = True
                            self._wake_all()
                            self._ready.set()
                        elif message["type"] == "message":
                            await self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                self._subscribed = False
                raise
            except Exception:  # a Redis blip: resubscribe; waiters fall back to PostgreSQL
                self._subscribed = False
                self._wake_all()
                log.exception("event listener lost its Redis connection; resubscribing")
                await asyncio.sleep(0.5)

    def _wake_all(self) -> None:
        for waiters in (self._waiters, self._change_waiters):
            for futures in waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_result(None)

    async def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        channel = channel.decode() if isinstance(channel, bytes) else channel
        text = data.decode() if isinstance(data, bytes) else data
        head, _, rest = text.partition(" ")
        try:
            execution_id = uuid.UUID(head)
        except ValueError:
            return
        if channel in (FINISHED, STATE):
            waiters = (self._waiters, self._change_waiters) if channel == FINISHED else (self._change_waiters,)
            heard = Finished(rest or None) if channel == FINISHED else None
            for futures in waiters:
                for future in futures.get(execution_id, ()):
                    if not future.done():
                        future.set_result(heard)
        elif channel == CANCEL:
            for handler in self._cancel_handlers:
                try:
                    await handler(execution_id)
                except Exception:
                    log.exception("cancel handler failed for %s", execution_id)
