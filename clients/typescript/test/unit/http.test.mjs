// Retries, Retry-After and Idempotency-Key against a real local HTTP server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Executor, NetworkError, TimeoutError, RateLimitedError, QueueFullError, InputInvalidError, ConflictError,
  ApiError } from "../../dist/index.js";
import { serve, json, problem, hangUp, EXECUTION } from "./server.mjs";

const fast = (url, extra = {}) => new Executor({ baseUrl: url, token: "exe_test", retryBaseDelayMs: 5, maxRetryDelayMs: 2000, ...extra });

test("a GET is retried on 500, 502, 503, 504 and then answers", async () => {
  const server = await serve([problem(500, "queue_unavailable"), problem(502, "queue_unavailable"),
    (req, res) => { res.writeHead(503); res.end("busy"); }, (req, res) => { res.writeHead(504); res.end(); },
    json(200, EXECUTION)]);
  try {
    const execution = await fast(server.url, { maxRetries: 4 }).getExecution(EXECUTION.id);
    assert.equal(execution.id, EXECUTION.id);
    assert.equal(server.requests.length, 5);
    assert.equal(server.requests[0].headers.authorization, "Bearer exe_test");
  } finally {
    await server.close();
  }
});

test("retries stop after maxRetries and the last error is thrown, typed", async () => {
  const server = await serve([problem(503, "queue_full", { "retry-after": "0" })]);
  try {
    await assert.rejects(fast(server.url, { maxRetries: 2 }).getExecution("x"), (err) => {
      assert.ok(err instanceof QueueFullError);
      assert.equal(err.status, 503);
      assert.equal(err.slug, "queue_full");
      assert.equal(err.retryAfter, 0);
      return true;
    });
    assert.equal(server.requests.length, 3);
  } finally {
    await server.close();
  }
});

test("429 waits what Retry-After says (seconds)", async () => {
  const server = await serve([problem(429, "rate_limited", { "retry-after": "1" }), json(200, EXECUTION)]);
  try {
    await fast(server.url).getExecution(EXECUTION.id);
    assert.equal(server.requests.length, 2);
    const waited = server.requests[1].at - server.requests[0].at;
    assert.ok(waited >= 950, `waited ${waited} ms, Retry-After said 1 s`);
  } finally {
    await server.close();
  }
});

test("Retry-After as an HTTP-date is honoured, and capped at maxRetryDelayMs", async () => {
  const inAnHour = new Date(Date.now() + 3_600_000).toUTCString();
  const server = await serve([problem(429, "rate_limited", { "retry-after": inAnHour }), json(200, EXECUTION)]);
  try {
    const started = Date.now();
    await fast(server.url, { maxRetryDelayMs: 300 }).getExecution(EXECUTION.id);
    const waited = server.requests[1].at - server.requests[0].at;
    assert.ok(waited >= 250 && Date.now() - started < 3000, `waited ${waited} ms, cap 300`);
  } finally {
    await server.close();
  }
});

test("the last 429 is a RateLimitedError carrying retryAfter", async () => {
  const server = await serve([problem(429, "rate_limited", { "retry-after": "7" })]);
  try {
    await assert.rejects(fast(server.url, { maxRetries: 0 }).getExecution("x"), (err) => {
      assert.ok(err instanceof RateLimitedError);
      assert.ok(err instanceof ApiError);
      assert.equal(err.retryAfter, 7);
      return true;
    });
  } finally {
    await server.close();
  }
});

test("a POST with an Idempotency-Key is retried with the same key", async () => {
  const server = await serve([hangUp(), problem(503, "queue_unavailable"), json(201, EXECUTION)]);
  try {
    const execution = await fast(server.url).submit({ agent_id: "a", input: { text: "hi" } });
    assert.equal(execution.id, EXECUTION.id);
    assert.equal(server.requests.length, 3);
    const keys = server.requests.map((r) => r.headers["idempotency-key"]);
    assert.match(keys[0], /^[0-9a-f-]{36}$/);
    assert.deepEqual(new Set(keys).size, 1, "one key for every attempt");
    assert.deepEqual(JSON.parse(server.requests[2].body), { agent_id: "a", input: { text: "hi" } });
  } finally {
    await server.close();
  }
});

test("the caller's Idempotency-Key is sent as given; each call gets a fresh one otherwise", async () => {
  const server = await serve([json(201, EXECUTION)]);
  try {
    const client = fast(server.url);
    await client.submit({ agent_id: "a", input: 1 }, { idempotencyKey: "order-42" });
    await client.createToken({ role: "user", subject: "alice" });
    await client.createToken({ role: "user", subject: "alice" });
    assert.equal(server.requests[0].headers["idempotency-key"], "order-42");
    assert.notEqual(server.requests[1].headers["idempotency-key"], server.requests[2].headers["idempotency-key"]);
  } finally {
    await server.close();
  }
});

test("operations whose document takes no Idempotency-Key are sent without one", async () => {
  const server = await serve([json(200, { url: null, secret: "whsec_x", created_at: "", updated_at: "" })]);
  try {
    const client = fast(server.url);
    await client.setWebhookEndpoint(null);
    await client.webhookEndpoint();
    assert.equal(server.requests[0].headers["idempotency-key"], undefined);
    assert.equal(server.requests[1].headers["idempotency-key"], undefined);
  } finally {
    await server.close();
  }
});

test("a POST without a key is not retried, on a 503 nor on a network error", async () => {
  const server = await serve([problem(503, "queue_unavailable"), hangUp()]);
  try {
    const client = fast(server.url);
    await assert.rejects(client.cancel("x"), (err) => err instanceof ApiError && err.status === 503);
    await assert.rejects(client.cancel("x"), NetworkError);
    assert.equal(server.requests.length, 2);
  } finally {
    await server.close();
  }
});

test("a 4xx other than 429 is not retried", async () => {
  const server = await serve([problem(422, "input_invalid", {}, { errors: [{ pointer: "/text", detail: "required" }] })]);
  try {
    await assert.rejects(fast(server.url).submit({ agent_id: "a", input: {} }), (err) => {
      assert.ok(err instanceof InputInvalidError);
      assert.equal(err.status, 422);
      assert.deepEqual(err.errors, [{ pointer: "/text", detail: "required" }]);
      assert.equal(err.type, "urn:executor:problem:input_invalid");
      return true;
    });
    assert.equal(server.requests.length, 1);
  } finally {
    await server.close();
  }
});

test("a 409 conflict on the retry of a keyed POST (first attempt still running) is retried", async () => {
  const server = await serve([hangUp(), problem(409, "conflict"), json(201, EXECUTION)]);
  try {
    await fast(server.url).submit({ agent_id: "a", input: 1 });
    assert.equal(server.requests.length, 3);
  } finally {
    await server.close();
  }
  const first = await serve([problem(409, "conflict")]);
  try {
    await assert.rejects(fast(first.url).submit({ agent_id: "a", input: 1 }), ConflictError);
    assert.equal(first.requests.length, 1, "a 409 on the first attempt is the caller's");
  } finally {
    await first.close();
  }
});

test("a slow answer is a TimeoutError, retried for a GET", async () => {
  const server = await serve([(req, res) => setTimeout(() => json(200, EXECUTION)(req, res), 500), json(200, EXECUTION)]);
  try {
    const execution = await fast(server.url, { timeoutMs: 100 }).getExecution(EXECUTION.id);
    assert.equal(execution.id, EXECUTION.id);
    assert.equal(server.requests.length, 2);
  } finally {
    await server.close();
  }
  const slow = await serve([(req, res) => setTimeout(() => json(200, EXECUTION)(req, res), 400)]);
  try {
    await assert.rejects(fast(slow.url, { timeoutMs: 100 }).cancel("x"), TimeoutError);
    assert.equal(slow.requests.length, 1, "a POST without a key is not repeated after a timeout");
  } finally {
    await slow.close();
  }
});

test("a connection refused is a NetworkError after the retries", async () => {
  const server = await serve([json(200, {})]);
  const url = server.url;
  await server.close();
  await assert.rejects(fast(url, { maxRetries: 1 }).health(), (err) => err instanceof NetworkError && !(err instanceof TimeoutError));
});

test("?wait= is sent and extends the attempt's timeout; run polls until final", async () => {
  const running = { ...EXECUTION, status: "RUNNING", output: null };
  const server = await serve([
    (req, res) => setTimeout(() => json(202, running)(req, res), 200),
    json(200, running),
    json(200, EXECUTION),
  ]);
  try {
    const execution = await fast(server.url, { timeoutMs: 100 }).run("agent", { text: "hi" }, { waitTimeoutMs: 20_000 });
    assert.equal(execution.status, "COMPLETED");
    assert.equal(server.requests.length, 3);
    assert.match(server.requests[0].url, /^\/v1\/executions\?wait=\d+$/);
    assert.match(server.requests[1].url, new RegExp(`^/v1/executions/${EXECUTION.id}\\?wait=\\d+$`));
    assert.ok(Number(new URL(server.requests[0].url, server.url).searchParams.get("wait")) <= 60);
  } finally {
    await server.close();
  }
});

test("submitBatch gives every item a key, so the batch is retried", async () => {
  const server = await serve([problem(503, "queue_unavailable"), json(200, { items: [] })]);
  try {
    await fast(server.url).submitBatch([{ agent_id: "a", input: 1 }, { agent_id: "a", input: 2, idempotency_key: "mine" }]);
    assert.equal(server.requests.length, 2);
    const [first, second] = server.requests.map((r) => JSON.parse(r.body).items);
    assert.deepEqual(first, second, "the retry sends the same keys");
    assert.match(first[0].idempotency_key, /^[0-9a-f-]{36}$/);
    assert.equal(first[1].idempotency_key, "mine");
  } finally {
    await server.close();
  }
});

test("pagination follows next_cursor", async () => {
  const server = await serve([
    json(200, { items: [{ id: "1" }, { id: "2" }], next_cursor: "c2" }),
    json(200, { items: [{ id: "3" }], next_cursor: null }),
  ]);
  try {
    const ids = [];
    for await (const agent of fast(server.url).agents({ limit: 2 })) ids.push(agent.id);
    assert.deepEqual(ids, ["1", "2", "3"]);
    assert.equal(server.requests[0].url, "/v1/agents?limit=2");
    assert.equal(server.requests[1].url, "/v1/agents?limit=2&cursor=c2");
  } finally {
    await server.close();
  }
});

test("bytes, text, path encoding, 204 and withToken", async () => {
  const server = await serve([
    (req, res) => { res.writeHead(200, { "content-type": "application/json" }); res.end('{"text":"é"}'); },
    (req, res) => { res.writeHead(200, { "content-type": "text/plain" }); res.end("log line\n"); },
    (req, res) => { res.writeHead(204); res.end(); },
  ]);
  try {
    const client = fast(server.url);
    const input = await client.executionInput("e1");
    assert.ok(input instanceof Uint8Array);
    assert.deepEqual(Buffer.from(input), Buffer.from('{"text":"é"}'));
    assert.equal(await client.withToken("exe_other").executionLog("e1"), "log line\n");
    assert.equal(server.requests[1].headers.authorization, "Bearer exe_other");
    assert.equal(await client.deleteImage("executor/busybox:latest"), undefined);
    assert.equal(server.requests[2].url, "/v1/images/executor/busybox%3Alatest");
    assert.equal(server.requests[2].method, "DELETE");
  } finally {
    await server.close();
  }
});

test("events() reads the SSE stream until the final event", async () => {
  const state = { id: EXECUTION.id, status: "RUNNING", error: null, started_at: null, finished_at: null };
  const server = await serve([(req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(`id: 1\nevent: status\ndata: ${JSON.stringify({ ...state, status: "PENDING" })}\n\n: keepalive\n\n`);
    setTimeout(() => res.write(`id: 2\r\nevent: status\r\ndata: ${JSON.stringify(state)}\r\n\r\n`), 20);
    setTimeout(() => res.end(`id: 3\nevent: final\ndata: ${JSON.stringify(EXECUTION)}\n\n`), 40);
  }]);
  try {
    const seen = [];
    for await (const event of fast(server.url).events(EXECUTION.id)) seen.push([event.id, event.event, event.data.status]);
    assert.deepEqual(seen, [["1", "status", "PENDING"], ["2", "status", "RUNNING"], ["3", "final", "COMPLETED"]]);
    assert.equal(server.requests[0].headers.accept, "text/event-stream");
  } finally {
    await server.close();
  }
});

test("events() resumes a cut stream with Last-Event-ID", async () => {
  const state = { id: EXECUTION.id, status: "RUNNING", error: null, started_at: null, finished_at: null };
  const server = await serve([
    (req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`id: 1\nevent: status\ndata: ${JSON.stringify(state)}\n\n`);
    },
    (req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`id: 2\nevent: final\ndata: ${JSON.stringify(EXECUTION)}\n\n`);
    },
  ]);
  try {
    const kinds = [];
    for await (const event of fast(server.url).events(EXECUTION.id)) kinds.push(event.event);
    assert.deepEqual(kinds, ["status", "final"]);
    assert.equal(server.requests[1].headers["last-event-id"], "1");
  } finally {
    await server.close();
  }
});
