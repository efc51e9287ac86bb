/**
 * One request to the service: URL from the operation table, auth, Idempotency-Key, timeout, retries,
 * and the answer read as JSON, text, bytes or a stream (or turned into a typed error).
 *
 * Retried: network errors, timeouts, 429, 500, 502, 503 and 504, with exponential backoff and
 * jitter (a random wait between half and all of base·2^n), or after `Retry-After` (seconds or an
 * HTTP-date, capped at `maxRetryDelayMs`). Only when the request is safe to repeat: GET, PUT and
 * DELETE always; POST only when it carries an Idempotency-Key (the same key on every attempt, so
 * the service replays rather than redoes it), or when the client made it safe otherwise (a batch
 * whose every item has a key; receipt verification, which changes nothing). A 409 `conflict` on a
 * retry of a keyed request (the first attempt still running on the service) is retried too. No
 * other 4xx is.
 */
import { randomUUID } from "node:crypto";
import { ApiError, apiErrorFor, NetworkError, TimeoutError, parseRetryAfterSeconds, type Problem } from "./errors.js";
import { OPERATIONS, type OperationId } from "./generated/problems.js";

export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>;

export interface ClientOptions {
  /** The service's base URL, e.g. `https://executor.example.com` (a path prefix is kept). */
  baseUrl: string;
  /** A bearer token (`exe_…`); omit for the public operations (keys, log, health). */
  token?: string | undefined;
  /** Time allowed for one attempt, in ms (added to the server-side `?wait=` of a waiting request). Default 30 000. */
  timeoutMs?: number;
  /** Retries after the first attempt of a request that is safe to repeat. Default 3. */
  maxRetries?: number;
  /** First backoff delay in ms; doubles each retry, with jitter. Default 250. */
  retryBaseDelayMs?: number;
  /** Longest wait between two attempts, in ms, whatever `Retry-After` says. Default 30 000. */
  maxRetryDelayMs?: number;
  /** A fetch implementation; default the global `fetch` of Node 20. */
  fetch?: FetchLike;
  /** Sent as User-Agent. */
  userAgent?: string;
}

/** Per-call options every method takes as its last argument. */
export interface RequestOptions {
  /** Aborts the call (and its retries). */
  signal?: AbortSignal;
  /** Overrides the client's per-attempt timeout. */
  timeoutMs?: number;
  /** Overrides the client's retries for this call. */
  maxRetries?: number;
  /** For operations that take one: your Idempotency-Key (default: a fresh UUID, reused by the retries). */
  idempotencyKey?: string;
  /** Extra headers. */
  headers?: Record<string, string>;
}

export type ResponseKind = "json" | "text" | "bytes" | "stream" | "none";

export interface Call {
  path?: Record<string, string | number>;
  query?: Record<string, string | number | boolean | null | undefined> | undefined;
  body?: unknown;
  /** A raw body (module upload): sent as is with this content type. */
  rawBody?: { bytes: Uint8Array; contentType: string };
  kind?: ResponseKind;
  /** Statuses besides 2xx whose body is an answer, not an error (readiness' 503). */
  alsoOk?: number[];
  /** Seconds the service may hold the request (`?wait=`): added to the attempt's timeout. */
  waitS?: number;
  /** Repeating the request is safe although the method alone would not say so. */
  retrySafe?: boolean;
}

export interface Answer<T> {
  status: number;
  headers: Headers;
  data: T;
}

const RETRY_STATUSES = new Set([429, 500, 502, 503, 504]);

export class Transport {
  readonly baseUrl: string;
  readonly token: string | undefined;
  readonly timeoutMs: number;
  readonly maxRetries: number;
  readonly retryBaseDelayMs: number;
  readonly maxRetryDelayMs: number;
  readonly userAgent: string;
  private readonly fetchImpl: FetchLike;

  constructor(options: ClientOptions) {
    if (!options.baseUrl) throw new TypeError("baseUrl is required");
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.maxRetries = options.maxRetries ?? 3;
    this.retryBaseDelayMs = options.retryBaseDelayMs ?? 250;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 30_000;
    this.userAgent = options.userAgent ?? "executor-client-ts/0.1.0";
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  options(): ClientOptions {
    return {
      baseUrl: this.baseUrl, token: this.token, timeoutMs: this.timeoutMs, maxRetries: this.maxRetries,
      retryBaseDelayMs: this.retryBaseDelayMs, maxRetryDelayMs: this.maxRetryDelayMs, fetch: this.fetchImpl,
      userAgent: this.userAgent,
    };
  }

  url(operationId: OperationId, call: Call): string {
    const template: string = OPERATIONS[operationId].path;
    const path = template.replace(/\{([^}]+)\}/g, (_, name: string) => {
      const value = call.path?.[name];
      if (value === undefined || value === "") throw new TypeError(`${operationId}: path parameter ${name} is required`);
      // An image reference may hold slashes, which the route takes as they are.
      return String(value).split("/").map(encodeURIComponent).join("/");
    });
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(call.query ?? {})) {
      if (value !== undefined && value !== null) params.append(name, String(value));
    }
    const query = params.toString();
    return this.baseUrl + path + (query ? `?${query}` : "");
  }

  async request<T>(operationId: OperationId, call: Call, opts: RequestOptions = {}): Promise<Answer<T>> {
    const op = OPERATIONS[operationId];
    const url = this.url(operationId, call);
    const headers = new Headers(opts.headers);
    headers.set("user-agent", this.userAgent);
    if (this.token && !headers.has("authorization")) headers.set("authorization", `Bearer ${this.token}`);
    const kind = call.kind ?? "json";
    if (kind === "json") headers.set("accept", "application/json, application/problem+json");
    if (kind === "stream") headers.set("accept", "text/event-stream");
    let body: RequestInit["body"];
    if (call.rawBody) {
      headers.set("content-type", call.rawBody.contentType);
      body = call.rawBody.bytes;
    } else if (call.body !== undefined) {
      headers.set("content-type", "application/json");
      body = JSON.stringify(call.body);
    }
    let keyed = false;
    if (op.idempotencyKey) {
      headers.set("idempotency-key", opts.idempotencyKey ?? headers.get("idempotency-key") ?? randomUUID());
      keyed = true;
    }
    const method: string = op.method;
    const retrySafe = method !== "POST" || keyed || call.retrySafe === true;
    const maxRetries = retrySafe ? opts.maxRetries ?? this.maxRetries : 0;
    const attemptTimeout = (opts.timeoutMs ?? this.timeoutMs) + (call.waitS ?? 0) * 1000;

    for (let attempt = 0; ; attempt++) {
      // The attempt's clock runs until the whole answer is read (a stream: until its headers arrive).
      const clock = new AbortController();
      const timer = setTimeout(() => clock.abort(), attemptTimeout);
      const signal = opts.signal ? AbortSignal.any([opts.signal, clock.signal]) : clock.signal;
      const timedOut = (cause: unknown) =>
        new TimeoutError(`${method} ${url}: no complete answer within ${attemptTimeout} ms`, { cause });
      let response: Response;
      try {
        response = await this.fetchImpl(url, { method, headers, body, signal, redirect: "follow" });
      } catch (cause) {
        clearTimeout(timer);
        if (opts.signal?.aborted) throw opts.signal.reason ?? cause;
        const error = clock.signal.aborted ? timedOut(cause) : new NetworkError(`${method} ${url}: ${describe(cause)}`, { cause });
        if (attempt < maxRetries) {
          await sleep(this.backoff(attempt, undefined), opts.signal);
          continue;
        }
        throw error;
      }
      const ok = (response.status >= 200 && response.status < 300) || (call.alsoOk ?? []).includes(response.status);
      if (ok) {
        if (kind === "stream") {
          clearTimeout(timer);
          return { status: response.status, headers: response.headers, data: response as T };
        }
        try {
          return { status: response.status, headers: response.headers, data: (await read(response, kind)) as T };
        } catch (cause) {
          if (opts.signal?.aborted) throw opts.signal.reason ?? cause;
          if (clock.signal.aborted) throw timedOut(cause);
          if (cause instanceof SyntaxError) throw cause;
          throw new NetworkError(`${method} ${url}: the answer was cut short: ${describe(cause)}`, { cause });
        } finally {
          clearTimeout(timer);
        }
      }
      const error = await errorOf(response, operationId);
      clearTimeout(timer);
      const inFlightReplay = keyed && attempt > 0 && error.slug === "conflict";
      if ((RETRY_STATUSES.has(response.status) || inFlightReplay) && attempt < maxRetries) {
        await sleep(this.backoff(attempt, parseRetryAfterSeconds(response.headers.get("retry-after"))), opts.signal);
        continue;
      }
      throw error;
    }
  }

  /** The wait before retry number `attempt + 1`: Retry-After when given, else exponential with jitter; capped. */
  backoff(attempt: number, retryAfterS: number | undefined): number {
    if (retryAfterS !== undefined) return Math.min(retryAfterS * 1000, this.maxRetryDelayMs);
    const ceiling = Math.min(this.retryBaseDelayMs * 2 ** attempt, this.maxRetryDelayMs);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }
}

async function read(response: Response, kind: ResponseKind): Promise<unknown> {
  switch (kind) {
    case "none":
      await response.body?.cancel();
      return undefined;
    case "stream":
      return response;
    case "text":
      return response.text();
    case "bytes":
      return new Uint8Array(await response.arrayBuffer());
    case "json": {
      if (response.status === 204) return undefined;
      const text = await response.text();
      return text === "" ? undefined : JSON.parse(text);
    }
  }
}

async function errorOf(response: Response, operationId: OperationId): Promise<ApiError> {
  let text = "";
  try {
    text = await response.text();
  } catch {
    // the body is lost; the status still says what happened
  }
  let problem: Problem | undefined;
  if (/^application\/(problem\+)?json/i.test(response.headers.get("content-type") ?? "")) {
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed && typeof parsed === "object" && typeof (parsed as Problem).type === "string") problem = parsed as Problem;
    } catch {
      // not JSON after all: kept as the body
    }
  }
  return apiErrorFor({ status: response.status, problem, headers: response.headers, operationId, body: problem ? undefined : text });
}

function describe(cause: unknown): string {
  if (cause instanceof Error) {
    const inner = (cause as { cause?: unknown }).cause;
    return inner instanceof Error ? `${cause.message} (${inner.message})` : cause.message;
  }
  return String(cause);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
