"""Sending a Call with retries: SyncTransport (one httpx.Client, shared by threads) and
AsyncTransport (one httpx.AsyncClient per running event loop).

httpx.AsyncClient's connections belong to the loop that opened them, so an AsyncExecutor used
from two loops one after the other (two `asyncio.run`) must not carry a connection across:
AsyncTransport keeps a client per loop in a WeakKeyDictionary, drops the ones of loops that are
closed, and closes them all on aclose(). An httpx client passed in by the caller is used as it
is, from whatever loop calls, and is never closed here (it is the caller's).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator

import httpx

from executor_client._common import Call, Config, error_for, is_error, retry_delay, wrap_transport_error

LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
STREAM_READ_TIMEOUT_S = 45.0  # the events stream sends a keepalive every 15 s of silence


class SyncTransport:
    def __init__(self, config: Config, client: httpx.Client | None, transport: httpx.BaseTransport | None) -> None:
        self.config = config
        self._given = client
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        if self._given is not None:
            return self._given
        with self._lock:
            if self._client is None or self._client.is_closed:
                self._client = httpx.Client(transport=self._transport, limits=LIMITS, follow_redirects=False)
            return self._client

    def send(self, call: Call) -> httpx.Response:
        retry = 0
        while True:
            client = self.client()
            try:
                response = client.send(call.request(client))
            except httpx.TransportError as exc:
                delay = retry_delay(call, self.config.retry, retry, exc=exc)
                if delay is None:
                    raise wrap_transport_error(exc, call) from exc
            else:
                if not is_error(call, response):
                    return response
                delay = retry_delay(call, self.config.retry, retry, response=response)
                if delay is None:
                    raise error_for(response)
            self.sleep(delay)
            retry += 1

    @contextlib.contextmanager
    def stream(self, call: Call) -> Iterator[httpx.Response]:
        client = self.client()
        request = client.build_request(call.method, call.url, params=call.params, headers=call.headers,
                                       timeout=httpx.Timeout(call.timeout, read=STREAM_READ_TIMEOUT_S))
        response = client.send(request, stream=True)
        try:
            yield response
        finally:
            response.close()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class AsyncTransport:
    def __init__(self, config: Config, client: httpx.AsyncClient | None,
                 transport: httpx.AsyncBaseTransport | None) -> None:
        self.config = config
        self._given = client
        self._transport = transport
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    def client(self) -> httpx.AsyncClient:
        """This loop's client (made on first use in it)."""
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None or client.is_closed:
                for other in [other for other in self._clients if other.is_closed()]:
                    del self._clients[other]  # its connections died with it; nothing left to close
                client = httpx.AsyncClient(transport=self._transport, limits=LIMITS, follow_redirects=False)
                self._clients[loop] = client
            return client

    async def send(self, call: Call) -> httpx.Response:
        retry = 0
        while True:
            client = self.client()
            try:
                response = await client.send(call.request(client))
            except httpx.TransportError as exc:
                delay = retry_delay(call, self.config.retry, retry, exc=exc)
                if delay is None:
                    raise wrap_transport_error(exc, call) from exc
            else:
                if not is_error(call, response):
                    return response
                delay = retry_delay(call, self.config.retry, retry, response=response)
                if delay is None:
                    raise error_for(response)
            await self.sleep(delay)
            retry += 1

    @contextlib.asynccontextmanager
    async def stream(self, call: Call) -> AsyncIterator[httpx.Response]:
        client = self.client()
        request = client.build_request(call.method, call.url, params=call.params, headers=call.headers,
                                       timeout=httpx.Timeout(call.timeout, read=STREAM_READ_TIMEOUT_S))
        response = await client.send(request, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def aclose(self) -> None:
        """Close this loop's client; another live loop's client is closed in that loop; a dead loop's is dropped."""
        current = asyncio.get_running_loop()
        with self._lock:
            clients = list(self._clients.items())
            self._clients.clear()
        for loop, client in clients:
            if loop is current:
                await client.aclose()
            elif loop.is_running() and not loop.is_closed():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)
