"""Status events over Redis pub/sub: "this execution reached a final state"
(wakes API requests waiting with ?wait=N), "this execution changed state"
(PENDING → RUNNING, RUNNING → PENDING when a job is put back: wakes live
status streams, which treat a final state as a change too) and "cancel this
execution" (reaches the worker that runs it, whichever process that is).

A running task's stderr lines go to a channel of their own execution
(`executor:stderr:<id>`, published by executions/progress.py): a process
subscribes to one only while a live stream follows that execution, on the
same connection as the rest, so followers cost no Redis connection each. They
are a live view, not a record: one published while nobody listened, or lost
with a blip, is gone (the whole log is in the final record).

Pub/sub can drop a message when a connection blips; every waiter also
re-reads PostgreSQL, so a lost event costs latency, never correctness. A waiter
whose subscription stayed up since its last read re-reads rarely (`unbroken_since`):
while a subscriber's connection is up Redis delivers every message to it (a
subscriber that falls behind is disconnected, which counts as a break).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from executor.records.executions import ExecutionRecord

log = logging.getLogger(__name__)

FINISHED = "executor:finished"
CANCEL = "executor:cancel"
STATE = "executor:state"  # "<execution id> <status>"
# "<party>" or "*": what an MCP session lists as tools may have changed for that party (a user's
# entitlements) or for everyone (agents and versions); executor/mcp/changes.py listens.
TOOLS_CHANGED = "executor:tools-changed"
STDERR = "executor:stderr:"  # + execution id: one JSON payload per message (executions/progress.py)
# What one follower holds of an execution's stderr before it drops (and counts) the oldest.
FOLLOWER_BACKLOG = 1024


@dataclass(frozen=True)
class Finished:
    """What a waiter is woken with: the worker's timing marks when it sent them, and the final
    record itself when this process ran the execution (finished_here)."""

    timing: str | None = None
    record: ExecutionRecord | None = None


class StderrFollower:
    """The stderr payloads of one execution for one follower, as they come (Events.follow_stderr)."""

    def __init__(self, events: Events, execution_id: uuid.UUID) -> None:
        self._events = events
        self.execution_id = execution_id
        self.channel = f"{STDERR}{execution_id}"
        self.subscribed = asyncio.Event()  # Redis confirmed the subscription: what is published from now comes
        self.arrived = asyncio.Event()  # set while payloads wait to be taken
        self._backlog: collections.deque[str] = collections.deque()
        self.lost = 0  # payloads dropped here (a follower slower than the task), not yet told

    def take(self) -> list[str]:
        """The payloads (JSON text) that came since the last take, oldest first."""
        taken = list(self._backlog)
        self._backlog.clear()
        self.arrived.clear()
        return taken

    def close(self) -> None:
        self._events._unfollow(self)

    def _deliver(self, payload: str) -> None:
        if len(self._backlog) >= FOLLOWER_BACKLOG:
            self._backlog.popleft()
            self.lost += 1
        self._backlog.append(payload)
        self.arrived.set()


class Events:
    def __init__(self, client: redis.Redis, *, waiters: bool = True) -> None:
        """`waiters` False (a worker without the HTTP API): only cancels are listened for, so the
        process does not read two messages per execution that nobody in it waits for."""
        self._redis = client
        self._channels = (FINISHED, CANCEL, STATE, TOOLS_CHANGED) if waiters else (CANCEL,)
        self._waiters: dict[uuid.UUID, set[asyncio.Future[Finished | None]]] = defaultdict(set)
        self._change_waiters: dict[uuid.UUID, set[asyncio.Future[Finished | None]]] = defaultdict(set)
        self._cancel_handlers: list[Callable[[uuid.UUID], Awaitable[None]]] = []
        self._tools_handlers: list[Callable[[str], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._subscribed = False
        self.generation = 0  # one more at every (re)subscription
        self._pubsub: PubSub | None = None  # the listener's, while its connection is up
        self._followers: dict[uuid.UUID, set[StderrFollower]] = defaultdict(set)
        self._stderr_channels: set[str] = set()  # the stderr channels asked of Redis
        self._subscribing = asyncio.Lock()  # one change of the stderr subscriptions at a time, in order
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="events-listener")
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def stop(self) -> None:
        for task in (self._task, *self._background):
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def on_cancel(self, handler: Callable[[uuid.UUID], Awaitable[None]]) -> None:
        self._cancel_handlers.append(handler)

    def on_tools_changed(self, handler: Callable[[str], None]) -> None:
        """Call `handler` with the party (or "*") of every TOOLS_CHANGED message; it must not block."""
        self._tools_handlers.append(handler)

    async def publish_tools_changed(self, party: str) -> None:
        """Tell every API process that `party`'s runnable agents may have changed ("*": anyone's).
        Best effort, after the change committed: a lost message costs an MCP host a late
        list_changed (its sessions also re-check on a timer), never a wrong call."""
        try:
            await self._redis.publish(TOOLS_CHANGED, party)
        except (RedisError, OSError) as exc:
            log.warning("could not publish a tools change for %s: %s", party, exc)

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

    async def publish_stderr(self, execution_id: uuid.UUID, *payloads: str) -> None:
        """Stderr payloads of a running task, in order, to whoever follows it now (no one: they are
        gone); several in one round trip."""
        channel = f"{STDERR}{execution_id}"
        if len(payloads) == 1:
            await self._redis.publish(channel, payloads[0])
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.publish(channel, payload)
            await pipe.execute()

    async def follow_stderr(self, execution_id: uuid.UUID, *, confirm_s: float = 2.0) -> StderrFollower:
        """Start receiving an execution's stderr payloads; returns once Redis confirmed the
        subscription (or after confirm_s: Redis away costs the live lines, never the stream).
        Call close() on the follower after use."""
        follower = StderrFollower(self, execution_id)
        self._followers[execution_id].add(follower)
        if follower.channel in self._stderr_channels:
            follower.subscribed.set()  # another follower's subscription is up already
        try:
            await self._sync_stderr_channels()
            await asyncio.wait_for(follower.subscribed.wait(), confirm_s)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("could not subscribe to the stderr of %s: %s", execution_id, exc)
        return follower

    def _unfollow(self, follower: StderrFollower) -> None:
        followers = self._followers.get(follower.execution_id)
        if followers is None or follower not in followers:
            return
        followers.discard(follower)
        if not followers:
            del self._followers[follower.execution_id]
            task = asyncio.create_task(self._sync_stderr_channels_quietly())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _sync_stderr_channels(self) -> None:
        """Make the stderr subscriptions those of the executions followed now. Changes go out in
        order, under a lock: a quick unfollow and follow of one execution cannot end unsubscribed."""
        async with self._subscribing:
            pubsub = self._pubsub
            if pubsub is None:  # the listener subscribes to what is wanted when it connects
                return
            wanted = {f"{STDERR}{execution_id}" for execution_id in self._followers}
            gone, new = self._stderr_channels - wanted, wanted - self._stderr_channels
            if gone:
                self._stderr_channels -= gone
                await pubsub.unsubscribe(*gone)
            if new:
                await pubsub.subscribe(*new)
                self._stderr_channels |= new

    async def _sync_stderr_channels_quietly(self) -> None:
        try:
            await self._sync_stderr_channels()
        except Exception as exc:  # the listener's next connection subscribes to what is wanted then
            log.warning("could not change the stderr subscriptions: %s", exc)

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
                    async with self._subscribing:
                        following = {f"{STDERR}{execution_id}" for execution_id in self._followers}
                        await pubsub.subscribe(*self._channels, *following)
                        self._pubsub, self._stderr_channels = pubsub, following
                    async for message in pubsub.listen():
                        if message["type"] == "subscribe" and self._is_stderr(message["channel"]):
                            self._confirmed(message["channel"])
                        elif message["type"] == "message" and self._is_stderr(message["channel"]):
                            self._deliver_stderr(message["channel"], message["data"])
                        elif message["type"] == "subscribe" and message["data"] == 1:
                            # The first confirmation of a subscription, ours or redis-py's own after
                            # it reconnected: what was published while the connection was down is
                            # lost, so every waiter reads PostgreSQL again now.
                            self.generation += 1
                            self._subscribed = True
                            self._wake_all()
                            if self.generation > 1:  # a resubscription: tools changes may have been missed
                                await self._dispatch(TOOLS_CHANGED, "*")
                            self._ready.set()
                        elif message["type"] == "message":
                            await self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                self._subscribed, self._pubsub = False, None
                raise
            except Exception:  # a Redis blip: resubscribe; waiters fall back to PostgreSQL
                self._subscribed, self._pubsub = False, None
                self._wake_all()
                log.exception("event listener lost its Redis connection; resubscribing")
                await asyncio.sleep(0.5)

    @staticmethod
    def _is_stderr(channel: bytes | str) -> bool:
        return (channel.decode() if isinstance(channel, bytes) else channel).startswith(STDERR)

    def _followers_of(self, channel: bytes | str) -> set[StderrFollower]:
        name = channel.decode() if isinstance(channel, bytes) else channel
        try:
            return self._followers.get(uuid.UUID(name.removeprefix(STDERR)), set())
        except ValueError:
            return set()

    def _confirmed(self, channel: bytes | str) -> None:
        for follower in self._followers_of(channel):
            follower.subscribed.set()

    def _deliver_stderr(self, channel: bytes | str, data: bytes | str) -> None:
        payload = data.decode(errors="replace") if isinstance(data, bytes) else data
        for follower in self._followers_of(channel):
            follower._deliver(payload)

    def _wake_all(self) -> None:
        for waiters in (self._waiters, self._change_waiters):
            for futures in waiters.values():
                for future in futures:
                    if not future.done():
                        future.set_result(None)

    async def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        channel = channel.decode() if isinstance(channel, bytes) else channel
        text = data.decode() if isinstance(data, bytes) else data
        if channel == TOOLS_CHANGED:
            for tools_handler in self._tools_handlers:
                try:
                    tools_handler(text)
                except Exception:
                    log.exception("tools change handler failed for %s", text)
            return
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
