"""The asynchronous client of the executor API: one method per operation of clients/openapi.json
(OPERATIONS maps each operationId to its method), plus run(), the list iterators and events().

_sync.py is generated from _async.py by clients/python/generate.py, the way httpcore's unasync
does it (coroutines become functions, each async name its sync one): edit _async.py only, then
run the generator.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self, Unpack, cast

import httpx

from executor_client import models as m
from executor_client._common import (
    FINAL_STATUSES,
    MAX_WAIT_S,
    NO_BODY,
    Config,
    Event,
    RetryPolicy,
    SseParser,
    decode_json,
    error_for,
    is_retryable_exception,
    rfc3339,
    without_none,
    wrap_transport_error,
)
from executor_client._transport import AsyncTransport
from executor_client.errors import RunTimeout
from executor_client.operations import CONSOLE_ASSETS

DEFAULT_PAGE_SIZE = 50


class AsyncExecutor:
    """The executor API. Every method takes `timeout=` (seconds; None: the client's default) and raises
    a typed ApiError subclass for an error answer, NetworkError when no answer came (after retries).

    `with_token()` gives a client for another caller that shares this one's connections and settings;
    closing is the original's job. Usable from any thread and any event loop (see README).
    """

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0, max_retries: int = 2,
                 retry: RetryPolicy | None = None, headers: Mapping[str, str] | None = None,
                 http_client: httpx.AsyncClient | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        policy = retry if retry is not None else RetryPolicy(max_retries=max_retries)
        self._config = Config(base_url.rstrip("/"), timeout, policy, dict(headers or {}))
        self._token = token
        self._transport = AsyncTransport(self._config, http_client, transport)
        self._owner = True

    @property
    def base_url(self) -> str:
        return self._config.base_url

    @property
    def token(self) -> str | None:
        return self._token

    def with_token(self, token: str | None) -> Self:
        """The same service, connections and settings; another caller."""
        other = type(self).__new__(type(self))
        other._config, other._token, other._transport, other._owner = self._config, token, self._transport, False
        return other

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this client made (not a `with_token` copy's call, nor an http_client passed in)."""
        if self._owner:
            await self._transport.aclose()

    # --- the calls underneath -------------------------------------------------------------------

    async def _send(self, operation: str, *, path: Mapping[str, str | int] | None = None,
                    query: Mapping[str, object] | None = None, json: Any = NO_BODY, content: bytes | None = None,
                    content_type: str | None = None, idempotency_key: str | None = None,
                    timeout: float | None = None, wait: float = 0.0, retry_safe: bool = False,
                    ok: frozenset[int] = frozenset()) -> httpx.Response:
        call = self._config.call(operation, token=self._token, path=path, query=query, json=json, content=content,
                                 content_type=content_type, idempotency_key=idempotency_key, timeout=timeout,
                                 extra_timeout=wait, retry_safe=retry_safe, ok=ok)
        return await self._transport.send(call)

    async def _json(self, operation: str, **kwargs: Any) -> Any:
        return decode_json(await self._send(operation, **kwargs))

    async def _pages(self, operation: str, path: Mapping[str, str | int] | None, query: Mapping[str, object],
                     page_size: int, timeout: float | None) -> AsyncIterator[Any]:
        cursor: str | None = None
        while True:
            page = await self._json(operation, path=path, query={**query, "limit": page_size, "cursor": cursor},
                                    timeout=timeout)
            for item in page["items"]:
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # --- executions -----------------------------------------------------------------------------

    async def submit(self, agent_id: str, input: Any, *, version: int | None = None,
                     limits: m.Limits | None = None, webhook_url: str | None = None,
                     on_behalf_of: str | None = None, priority: m.ExecutionPriority | None = None, wait: float = 0,
                     idempotency_key: str | None = None, timeout: float | None = None) -> m.Execution:
        """Start an execution; with `wait` (seconds, at most 60) the service answers once it is final or
        that long has passed. The Idempotency-Key (made here unless given) makes the retries safe."""
        body = {"agent_id": agent_id, "input": input,
                **without_none(version=version, limits=limits, webhook_url=webhook_url, on_behalf_of=on_behalf_of,
                               priority=priority)}
        return cast(m.Execution, await self._json("submitExecution", query=without_none(wait=wait or None),
                                                   json=body, idempotency_key=idempotency_key, timeout=timeout,
                                                   wait=wait))

    async def run(self, agent_id: str, input: Any, *, version: int | None = None, limits: m.Limits | None = None,
                  webhook_url: str | None = None, on_behalf_of: str | None = None,
                  priority: m.ExecutionPriority | None = None, idempotency_key: str | None = None,
                  timeout: float = 300.0) -> m.Execution:
        """Submit, then wait (`?wait=` long polls) until the execution is final; RunTimeout after `timeout` s."""
        deadline = time.monotonic() + timeout
        record = await self.submit(agent_id, input, version=version, limits=limits, webhook_url=webhook_url,
                                   on_behalf_of=on_behalf_of, priority=priority, wait=min(MAX_WAIT_S, timeout),
                                   idempotency_key=idempotency_key)
        while record["status"] not in FINAL_STATUSES:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunTimeout(f"execution {record['id']} is still {record['status']} after {timeout} s", record)
            record = await self.execution(record["id"], wait=min(MAX_WAIT_S, left))
        return record

    async def submit_batch(self, items: Sequence[m.BatchItem], *, wait: float = 0,
                           timeout: float | None = None) -> m.BatchResult:
        """Submit up to 100 executions in one request; each item's answer (execution or problem) in order.
        Every item without an `idempotency_key` gets one here, so the whole request may be retried safely."""
        keyed = [{**item, "idempotency_key": item.get("idempotency_key") or str(uuid.uuid4())} for item in items]
        return cast(m.BatchResult, await self._json("submitExecutionBatch", query=without_none(wait=wait or None),
                                                    json={"items": keyed}, timeout=timeout, wait=wait,
                                                    retry_safe=True))

    async def execution(self, execution_id: str, *, wait: float = 0, timeout: float | None = None) -> m.Execution:
        """The execution's record; with `wait`, answered once it is final or after that many seconds."""
        return cast(m.Execution, await self._json("getExecution", path={"id": execution_id},
                                                  query=without_none(wait=wait or None), timeout=timeout, wait=wait))

    async def list_executions(self, *, status: m.ExecutionStatus | None = None, agent_id: str | None = None,
                              user: str | None = None, created_since: datetime | str | None = None,
                              created_before: datetime | str | None = None, limit: int | None = None,
                              cursor: str | None = None, timeout: float | None = None) -> m.ExecutionPage:
        """One page; `created_since`/`created_before` bound creation time to [since, before)."""
        query = without_none(status=status, agent_id=agent_id, user=user, created_since=rfc3339(created_since),
                             created_before=rfc3339(created_before), limit=limit, cursor=cursor)
        return cast(m.ExecutionPage, await self._json("listExecutions", query=query, timeout=timeout))

    def executions(self, *, status: m.ExecutionStatus | None = None, agent_id: str | None = None,
                   user: str | None = None, created_since: datetime | str | None = None,
                   created_before: datetime | str | None = None, page_size: int = DEFAULT_PAGE_SIZE,
                   timeout: float | None = None) -> AsyncIterator[m.Execution]:
        """Every execution the caller may see, newest first, page after page."""
        query = without_none(status=status, agent_id=agent_id, user=user, created_since=rfc3339(created_since),
                             created_before=rfc3339(created_before))
        return self._pages("listExecutions", None, query, page_size, timeout)

    async def cancel(self, execution_id: str, *, timeout: float | None = None) -> m.Execution:
        return cast(m.Execution, await self._json("cancelExecution", path={"id": execution_id}, timeout=timeout))

    async def execution_input(self, execution_id: str, *, timeout: float | None = None) -> bytes:
        """The input exactly as stored (its sha256 is the receipt's `input_sha256`)."""
        return (await self._send("getExecutionInput", path={"id": execution_id}, timeout=timeout)).content

    async def stdout(self, execution_id: str, *, timeout: float | None = None) -> bytes:
        """What the task wrote to stdout, byte for byte (its sha256 is the receipt's `output_sha256`)."""
        return (await self._send("getExecutionStdout", path={"id": execution_id}, timeout=timeout)).content

    async def egress(self, execution_id: str, *, timeout: float | None = None) -> m.ExecutionEgress:
        """What the task sent through the egress gateway (every request, no header or body) and the
        digest its receipt binds; `data` is None until it is final, and for an agent without egress.
        Check it offline with executor_client.receipts.verify_bundle(..., egress=data)."""
        return cast(m.ExecutionEgress, await self._json("getExecutionEgress", path={"id": execution_id},
                                                        timeout=timeout))

    async def logs(self, execution_id: str, *, timeout: float | None = None) -> str:
        """The task's stderr (text/plain)."""
        return (await self._send("getExecutionLog", path={"id": execution_id}, timeout=timeout)).text

    async def events(self, execution_id: str, *, last_event_id: str | None = None,
                     timeout: float | None = None) -> AsyncIterator[Event]:
        """The execution's Server-Sent Events: `status` at once and at each change, `stderr` for each line
        the task writes to stderr while it runs (data: {line, seq}, or {dropped} for lines over the caps;
        a live view, not replayed on a resume), then `final` (the whole Execution), and the iterator ends.
        A broken stream is resumed (Last-Event-ID), up to max_retries times in a row."""
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            call = self._config.call("streamExecutionEvents", token=self._token, path={"id": execution_id},
                                     headers=headers, timeout=timeout)
            try:
                async with self._transport.stream(call) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise error_for(response)
                    parser = SseParser()
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        failures = 0
                        last_event_id = event.id or last_event_id
                        yield event
                        if event.event == "final":
                            return
            except httpx.TransportError as exc:
                if not is_retryable_exception(exc) or failures >= self._config.retry.max_retries:
                    raise wrap_transport_error(exc, call) from exc
            else:  # the stream ended before `final`: follow it again
                if failures >= self._config.retry.max_retries:
                    raise wrap_transport_error(httpx.RemoteProtocolError("the event stream ended before final"),
                                               call)
            await self._transport.sleep(self._config.retry.delay(failures, None))
            failures += 1

    # --- agents ---------------------------------------------------------------------------------

    async def register_agent(self, *, idempotency_key: str | None = None, timeout: float | None = None,
                             **agent: Unpack[m.RegisterAgent]) -> m.Agent:
        """Register an agent (its version 1): name, image, command, input_schema, output_schema, pricing, …"""
        return cast(m.Agent, await self._json("registerAgent", json=agent, idempotency_key=idempotency_key,
                                              timeout=timeout))

    async def list_agents(self, *, limit: int | None = None, cursor: str | None = None,
                          timeout: float | None = None) -> m.AgentPage:
        return cast(m.AgentPage, await self._json("listAgents", query=without_none(limit=limit, cursor=cursor),
                                                  timeout=timeout))

    def agents(self, *, page_size: int = DEFAULT_PAGE_SIZE, timeout: float | None = None) -> AsyncIterator[m.Agent]:
        """Every agent (at its newest version) the caller may see, page after page."""
        return self._pages("listAgents", None, {}, page_size, timeout)

    async def agent(self, agent_id: str, *, timeout: float | None = None) -> m.Agent:
        return cast(m.Agent, await self._json("getAgent", path={"id": agent_id}, timeout=timeout))

    async def upload_module(self, agent_id: str, module: bytes, *, timeout: float | None = None) -> m.Agent:
        """The WebAssembly module of a WASM agent's newest version."""
        return cast(m.Agent, await self._json("uploadModule", path={"id": agent_id}, content=module,
                                              content_type="application/wasm", timeout=timeout))

    async def upload_version_module(self, agent_id: str, version: int, module: bytes, *,
                                    timeout: float | None = None) -> m.Agent:
        return cast(m.Agent, await self._json("uploadVersionModule", path={"id": agent_id, "version": version},
                                              content=module, content_type="application/wasm", timeout=timeout))

    async def publish_version(self, agent_id: str, *, idempotency_key: str | None = None,
                              timeout: float | None = None, **version: Unpack[m.PublishVersion]) -> m.Agent:
        return cast(m.Agent, await self._json("publishVersion", path={"id": agent_id}, json=version,
                                              idempotency_key=idempotency_key, timeout=timeout))

    async def list_versions(self, agent_id: str, *, limit: int | None = None, cursor: str | None = None,
                            timeout: float | None = None) -> m.AgentPage:
        return cast(m.AgentPage, await self._json("listVersions", path={"id": agent_id},
                                                  query=without_none(limit=limit, cursor=cursor), timeout=timeout))

    def versions(self, agent_id: str, *, page_size: int = DEFAULT_PAGE_SIZE,
                 timeout: float | None = None) -> AsyncIterator[m.Agent]:
        """Every version of an agent, page after page."""
        return self._pages("listVersions", {"id": agent_id}, {}, page_size, timeout)

    async def version(self, agent_id: str, version: int, *, timeout: float | None = None) -> m.Agent:
        return cast(m.Agent, await self._json("getVersion", path={"id": agent_id, "version": version},
                                              timeout=timeout))

    async def deprecate_version(self, agent_id: str, version: int, *, timeout: float | None = None) -> m.Agent:
        return cast(m.Agent, await self._json("deprecateVersion", path={"id": agent_id, "version": version},
                                              timeout=timeout))

    async def withdraw_version(self, agent_id: str, version: int, *, timeout: float | None = None) -> m.Agent:
        return cast(m.Agent, await self._json("withdrawVersion", path={"id": agent_id, "version": version},
                                              timeout=timeout))

    async def agent_stats(self, agent_id: str, *, timeout: float | None = None) -> m.AgentStats:
        return cast(m.AgentStats, await self._json("agentStats", path={"id": agent_id}, timeout=timeout))

    # --- secrets --------------------------------------------------------------------------------

    async def put_secret(self, agent_id: str, name: str, value: str, *, timeout: float | None = None) -> m.Secret:
        """Write or replace a secret of an agent (its service's or an operator's), for the egress gateway
        to inject. Write-only: the answer is its name and version (1, 2, ...), never the value."""
        return cast(m.Secret, await self._json("putSecret", path={"id": agent_id, "name": name},
                                               json={"value": value}, timeout=timeout))

    async def list_secrets(self, agent_id: str, *, limit: int | None = None, cursor: str | None = None,
                           timeout: float | None = None) -> m.SecretPage:
        """An agent's secrets by name, with their versions; never their values."""
        return cast(m.SecretPage, await self._json("listSecrets", path={"id": agent_id},
                                                   query=without_none(limit=limit, cursor=cursor), timeout=timeout))

    def secrets(self, agent_id: str, *, page_size: int = DEFAULT_PAGE_SIZE,
                timeout: float | None = None) -> AsyncIterator[m.Secret]:
        """Every secret of an agent, page after page."""
        return self._pages("listSecrets", {"id": agent_id}, {}, page_size, timeout)

    async def delete_secret(self, agent_id: str, name: str, *, timeout: float | None = None) -> None:
        await self._send("deleteSecret", path={"id": agent_id, "name": name}, timeout=timeout)

    async def reseal_secrets(self, *, timeout: float | None = None) -> m.ResealReport:
        """An operator, after a key rotation: every secret still under a previous key, sealed under the current one."""
        return cast(m.ResealReport, await self._json("resealSecrets", timeout=timeout))

    # --- entitlements ---------------------------------------------------------------------------

    async def grant(self, user: str, agent_id: str, *, uses: int | None = None,
                    expires_at: datetime | str | None = None, timeout: float | None = None) -> m.Entitlement:
        """Create or replace `user`'s entitlement to `agent_id`; None (`uses`, `expires_at`) means no limit.
        A datetime must be timezone-aware; it is sent as RFC 3339 in UTC."""
        body = {"user": user, "agent_id": agent_id, "uses": uses, "expires_at": rfc3339(expires_at)}
        return cast(m.Entitlement, await self._json("grantEntitlement", json=body, timeout=timeout))

    async def list_entitlements(self, *, user: str | None = None, agent_id: str | None = None,
                                limit: int | None = None, cursor: str | None = None,
                                timeout: float | None = None) -> m.EntitlementPage:
        query = without_none(user=user, agent_id=agent_id, limit=limit, cursor=cursor)
        return cast(m.EntitlementPage, await self._json("listEntitlements", query=query, timeout=timeout))

    def entitlements(self, *, user: str | None = None, agent_id: str | None = None,
                     page_size: int = DEFAULT_PAGE_SIZE, timeout: float | None = None) -> AsyncIterator[m.Entitlement]:
        return self._pages("listEntitlements", None, without_none(user=user, agent_id=agent_id), page_size, timeout)

    async def revoke_entitlement(self, entitlement_id: str, *, timeout: float | None = None) -> m.Entitlement:
        return cast(m.Entitlement, await self._json("revokeEntitlement", path={"id": entitlement_id},
                                                    timeout=timeout))

    # --- tokens ---------------------------------------------------------------------------------

    async def create_token(self, role: m.TokenRole, subject: str, *, expires_at: datetime | str | None = None,
                           priorities: Sequence[m.ExecutionPriority] | None = None, idempotency_key: str | None = None,
                           timeout: float | None = None) -> m.IssuedToken:
        """A new token; its secret (`token`) is in this answer only. A service issues user tokens only;
        an operator may grant a service token priority classes (`priorities`, normal among them)."""
        body = {"role": role, "subject": subject, **without_none(expires_at=rfc3339(expires_at),
                                                                  priorities=list(priorities) if priorities else None)}
        return cast(m.IssuedToken, await self._json("createToken", json=body, idempotency_key=idempotency_key,
                                                    timeout=timeout))

    async def list_tokens(self, *, role: m.TokenRole | None = None, subject: str | None = None,
                          limit: int | None = None, cursor: str | None = None,
                          timeout: float | None = None) -> m.TokenPage:
        query = without_none(role=role, subject=subject, limit=limit, cursor=cursor)
        return cast(m.TokenPage, await self._json("listTokens", query=query, timeout=timeout))

    def tokens(self, *, role: m.TokenRole | None = None, subject: str | None = None,
               page_size: int = DEFAULT_PAGE_SIZE, timeout: float | None = None) -> AsyncIterator[m.Token]:
        return self._pages("listTokens", None, without_none(role=role, subject=subject), page_size, timeout)

    async def revoke_token(self, token_id: str, *, timeout: float | None = None) -> m.Token:
        return cast(m.Token, await self._json("revokeToken", path={"id": token_id}, timeout=timeout))

    # --- receipts and the log -------------------------------------------------------------------

    async def receipt(self, execution_id: str, *, tree_size: int | None = None,
                      timeout: float | None = None) -> m.ReceiptBundle:
        """The receipt bundle of a final execution (`receipt_unavailable` before); `tree_size` asks for the
        inclusion proof against an earlier head of that size."""
        return cast(m.ReceiptBundle, await self._json("getReceipt", path={"id": execution_id},
                                                      query=without_none(tree_size=tree_size), timeout=timeout))

    async def attest_receipt(self, execution_id: str, *, keyid: str, sig: str | bytes, public_key: m.PublicJwk,
                             idempotency_key: str | None = None, timeout: float | None = None) -> m.ReceiptBundle:
        """Add a witness's countersignature (Ed25519 over the envelope's DSSE PAE; bytes are sent as base64)."""
        signature = base64.b64encode(sig).decode() if isinstance(sig, bytes) else sig
        body = {"keyid": keyid, "sig": signature, "public_key": public_key}
        return cast(m.ReceiptBundle, await self._json("attestReceipt", path={"id": execution_id}, json=body,
                                                      idempotency_key=idempotency_key, timeout=timeout))

    async def keys(self, *, timeout: float | None = None) -> m.KeySet:
        """The service's signing keys (a JWK set). An outside verifier should pin the keys it trusts."""
        return cast(m.KeySet, await self._json("getKeys", timeout=timeout))

    async def log_head(self, *, timeout: float | None = None) -> m.SignedLogHead:
        return cast(m.SignedLogHead, await self._json("getLogHead", timeout=timeout))

    async def inclusion_proof(self, index: int, size: int, *, timeout: float | None = None) -> m.InclusionProof:
        return cast(m.InclusionProof, await self._json("getInclusionProof", query={"index": index, "size": size},
                                                       timeout=timeout))

    async def consistency_proof(self, from_size: int, to_size: int, *,
                                timeout: float | None = None) -> m.ConsistencyProof:
        return cast(m.ConsistencyProof, await self._json("getConsistencyProof",
                                                         query={"from": from_size, "to": to_size}, timeout=timeout))

    async def verify_receipt(self, receipt: Any, *, input_bytes: bytes | None = None,
                             output_bytes: bytes | None = None, head: Any = None, egress: Any = None,
                             timeout: float | None = None) -> m.VerifyReport:
        """The service's own check of a bundle (against its keys); `egress`: the execution's egress
        list, checked against the receipt's digest. To check without trusting the service, use
        executor_client.receipts.verify_bundle instead."""
        body = {"receipt": receipt, **without_none(
            input_base64=base64.b64encode(input_bytes).decode() if input_bytes is not None else None,
            output_base64=base64.b64encode(output_bytes).decode() if output_bytes is not None else None,
            head=head, egress=egress)}
        return cast(m.VerifyReport, await self._json("verifyReceipt", json=body, timeout=timeout))

    # --- webhooks -------------------------------------------------------------------------------

    async def webhook_endpoint(self, *, timeout: float | None = None) -> m.WebhookEndpoint:
        return cast(m.WebhookEndpoint, await self._json("getWebhookEndpoint", timeout=timeout))

    async def set_webhook_endpoint(self, url: str | None, *, timeout: float | None = None) -> m.WebhookEndpoint:
        """Set (None: remove) the caller's webhook URL; the answer holds the signing secret."""
        return cast(m.WebhookEndpoint, await self._json("setWebhookEndpoint", json={"url": url}, timeout=timeout))

    async def rotate_webhook_secret(self, *, timeout: float | None = None) -> m.WebhookEndpoint:
        return cast(m.WebhookEndpoint, await self._json("rotateWebhookSecret", timeout=timeout))

    async def list_webhook_deliveries(self, execution_id: str, *, limit: int | None = None,
                                      cursor: str | None = None,
                                      timeout: float | None = None) -> m.WebhookDeliveries:
        return cast(m.WebhookDeliveries, await self._json("listExecutionWebhooks", path={"id": execution_id},
                                                          query=without_none(limit=limit, cursor=cursor),
                                                          timeout=timeout))

    def webhook_deliveries(self, execution_id: str, *, page_size: int = DEFAULT_PAGE_SIZE,
                           timeout: float | None = None) -> AsyncIterator[m.WebhookDelivery]:
        return self._pages("listExecutionWebhooks", {"id": execution_id}, {}, page_size, timeout)

    async def resend_webhook_delivery(self, execution_id: str, delivery_id: str, *,
                                      timeout: float | None = None) -> m.WebhookDelivery:
        """Queue a failed delivery once more (the same webhook-id; its attempts so far are kept)."""
        return cast(m.WebhookDelivery, await self._json("resendExecutionWebhook",
                                                        path={"id": execution_id, "delivery_id": delivery_id},
                                                        timeout=timeout))

    # --- images and operations ------------------------------------------------------------------

    async def list_images(self, *, limit: int | None = None, cursor: str | None = None,
                          timeout: float | None = None) -> m.ImageList:
        return cast(m.ImageList, await self._json("listImages", query=without_none(limit=limit, cursor=cursor),
                                                  timeout=timeout))

    def images(self, *, page_size: int = DEFAULT_PAGE_SIZE, timeout: float | None = None) -> AsyncIterator[m.Image]:
        return self._pages("listImages", None, {}, page_size, timeout)

    async def build_images(self, names: Sequence[str] | None = None, *, all: bool = False,
                           timeout: float | None = None) -> m.ImageBuildResult:
        """Build images by name (GET /v1/images `buildable`) or, with all=True, every one (minutes: pass a timeout)."""
        body: dict[str, Any] = {"all": True} if all else {"names": list(names or [])}
        return cast(m.ImageBuildResult, await self._json("buildImages", json=body, timeout=timeout))

    async def delete_image(self, ref: str, *, timeout: float | None = None) -> None:
        await self._send("deleteImage", path={"ref": ref}, timeout=timeout)

    async def status(self, *, timeout: float | None = None) -> m.Status:
        return cast(m.Status, await self._json("getStatus", timeout=timeout))

    async def health(self, *, timeout: float | None = None) -> m.Health:
        return cast(m.Health, await self._json("getHealth", timeout=timeout))

    async def readiness(self, *, timeout: float | None = None) -> m.Readiness:
        """`ready`, or `unavailable` with the dependency that does not answer (a 503 is an answer here)."""
        return cast(m.Readiness, await self._json("getReadiness", timeout=timeout, ok=frozenset({503})))

    async def metrics(self, *, timeout: float | None = None) -> str:
        """The Prometheus text exposition."""
        return (await self._send("getMetrics", timeout=timeout)).text

    async def openapi(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The API's OpenAPI 3.1 document, as the service serves it."""
        return cast(dict[str, Any], await self._json("getOpenApi", timeout=timeout))

    async def docs(self, *, timeout: float | None = None) -> str:
        """The HTML page of the API reference."""
        return (await self._send("getDocs", timeout=timeout)).text

    async def console(self, *, timeout: float | None = None) -> str:
        """The operator console's HTML page (for a browser; docs/console.md)."""
        return (await self._send("getConsole", timeout=timeout)).text

    async def console_asset(self, name: str, *, timeout: float | None = None) -> str:
        """One of the console's scripts or its style sheet: `console.js`, `verify.js` or `console.css`."""
        operation = CONSOLE_ASSETS.get(name)
        if operation is None:
            raise ValueError(f"the console has no asset {name!r}: one of {', '.join(CONSOLE_ASSETS)}")
        return (await self._send(operation, timeout=timeout)).text
