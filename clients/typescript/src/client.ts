/**
 * `Executor`: one method per operation of the document, typed from the generated schema, plus
 * what a marketplace backend needs around them: `run` (submit and wait), `events` (the SSE
 * stream), async iterators over every list, and byte-exact fetches of inputs and outputs.
 *
 * Method names by operation id are data (`METHOD_FOR_OPERATION`); the test suite checks the
 * table against openapi.json, so an operation without a method fails it.
 */
import { randomUUID } from "node:crypto";
import { NetworkError, WaitTimeoutError } from "./errors.js";
import type { OperationId } from "./generated/problems.js";
import { Transport, sleep, type ClientOptions, type RequestOptions, type Call } from "./http.js";
import { parseEventStream } from "./sse.js";
import {
  FINAL_STATUSES,
  type Agent, type AgentPage, type AgentStats, type Attestation, type BatchItem, type BatchResult, type BodyOf,
  type ConsistencyProof, type Entitlement, type EntitlementPage, type Execution, type ExecutionEvent,
  type ExecutionPage, type Health, type ImageBuildResult, type ImageList, type Image, type InclusionProof,
  type IssuedToken, type KeySet, type QueryOf, type Readiness, type ReceiptBundle, type ResponseOf,
  type SignedLogHead, type Status, type Token, type TokenPage, type VerifyReport, type WebhookDeliveries,
  type WebhookDelivery, type WebhookEndpoint, type Limits,
} from "./types.js";

/** The method of `Executor` that calls each operation of the document. */
export const METHOD_FOR_OPERATION = {
  getOpenApi: "openapi",
  getDocs: "docs",
  getHealth: "health",
  getReadiness: "readiness",
  submitExecution: "submit",
  listExecutions: "listExecutions",
  getExecution: "getExecution",
  getExecutionLog: "executionLog",
  getExecutionInput: "executionInput",
  getExecutionStdout: "executionStdout",
  getExecutionEgress: "executionEgress",
  putSecret: "putSecret",
  listSecrets: "listSecrets",
  deleteSecret: "deleteSecret",
  resealSecrets: "resealSecrets",
  cancelExecution: "cancel",
  submitExecutionBatch: "submitBatch",
  streamExecutionEvents: "events",
  registerAgent: "registerAgent",
  listAgents: "listAgents",
  getAgent: "getAgent",
  uploadModule: "uploadModule",
  uploadVersionModule: "uploadVersionModule",
  publishVersion: "publishVersion",
  listVersions: "listVersions",
  getVersion: "getVersion",
  deprecateVersion: "deprecateVersion",
  withdrawVersion: "withdrawVersion",
  agentStats: "agentStats",
  grantEntitlement: "grantEntitlement",
  listEntitlements: "listEntitlements",
  revokeEntitlement: "revokeEntitlement",
  createToken: "createToken",
  listTokens: "listTokens",
  revokeToken: "revokeToken",
  getReceipt: "receipt",
  attestReceipt: "attestReceipt",
  getKeys: "keys",
  getLogHead: "logHead",
  getInclusionProof: "inclusionProof",
  getConsistencyProof: "consistencyProof",
  verifyReceipt: "verifyReceiptOnServer",
  getWebhookEndpoint: "webhookEndpoint",
  setWebhookEndpoint: "setWebhookEndpoint",
  rotateWebhookSecret: "rotateWebhookSecret",
  listExecutionWebhooks: "listWebhookDeliveries",
  resendExecutionWebhook: "resendWebhookDelivery",
  getConsole: "console",
  getConsoleScript: "consoleAsset",
  getConsoleVerifier: "consoleAsset",
  getConsoleStyle: "consoleAsset",
  listImages: "listImages",
  buildImages: "buildImages",
  deleteImage: "deleteImage",
  getStatus: "status",
  getMetrics: "metrics",
} as const satisfies Record<OperationId, keyof Executor>;

/** The console's assets: one operation each (each its own media type), one method for all. */
export const CONSOLE_ASSETS = {
  "console.js": "getConsoleScript",
  "verify.js": "getConsoleVerifier",
  "console.css": "getConsoleStyle",
} as const satisfies Record<string, OperationId>;

/** The service holds a `?wait=` request at most this long (EXECUTOR_MAX_WAIT_S's default). */
export const MAX_WAIT_S = 60;

export interface SubmitOptions extends RequestOptions {
  /** Seconds the service may hold the answer until the execution ends (at most 60). */
  wait?: number;
}

export interface RunOptions extends RequestOptions {
  version?: number | null;
  limits?: Limits | null;
  /** A user's subject: a service runs on the user's behalf, taking one use of their entitlement. */
  onBehalfOf?: string | null;
  webhookUrl?: string | null;
  /** How long `run` waits for the execution to end, in ms (default 5 minutes); then WaitTimeoutError. */
  waitTimeoutMs?: number;
}

type Page<T> = { items: T[]; next_cursor: string | null };
type ListQuery<O extends OperationId> = Omit<QueryOf<O>, "cursor">;

export class Executor {
  private readonly http: Transport;

  constructor(options: ClientOptions) {
    this.http = new Transport(options);
  }

  /** The same client with another bearer token (a service acting, then a user). */
  withToken(token: string | undefined): Executor {
    return new Executor({ ...this.http.options(), token });
  }

  get baseUrl(): string {
    return this.http.baseUrl;
  }

  private async json<O extends OperationId>(operationId: O, call: Call, opts?: RequestOptions): Promise<ResponseOf<O>> {
    return (await this.http.request<ResponseOf<O>>(operationId, call, opts)).data;
  }

  // ---- meta ------------------------------------------------------------------------------------

  /** The OpenAPI document the service serves. */
  openapi(opts?: RequestOptions): Promise<Record<string, unknown>> {
    return this.json("getOpenApi", {}, opts) as Promise<Record<string, unknown>>;
  }

  /** The API reference page (HTML). */
  async docs(opts?: RequestOptions): Promise<string> {
    return (await this.http.request<string>("getDocs", { kind: "text" }, opts)).data;
  }

  /** The operator console's page (HTML, for a browser). */
  async console(opts?: RequestOptions): Promise<string> {
    return (await this.http.request<string>("getConsole", { kind: "text" }, opts)).data;
  }

  /** One of the console's scripts or its style sheet. */
  async consoleAsset(name: keyof typeof CONSOLE_ASSETS, opts?: RequestOptions): Promise<string> {
    return (await this.http.request<string>(CONSOLE_ASSETS[name], { kind: "text" }, opts)).data;
  }

  health(opts?: RequestOptions): Promise<Health> {
    return this.json("getHealth", {}, opts);
  }

  /** Readiness; a 503 (a dependency down) is answered, not thrown: see `ready` and `checks`. */
  readiness(opts?: RequestOptions): Promise<Readiness> {
    return this.json("getReadiness", { alsoOk: [503] }, opts);
  }

  status(opts?: RequestOptions): Promise<Status> {
    return this.json("getStatus", {}, opts);
  }

  /** Prometheus text exposition. */
  async metrics(opts?: RequestOptions): Promise<string> {
    return (await this.http.request<string>("getMetrics", { kind: "text" }, opts)).data;
  }

  // ---- executions ------------------------------------------------------------------------------

  /** POST /v1/executions. With `wait`, the answer comes when the execution ends (or after `wait` s, still running). */
  submit(body: BodyOf<"submitExecution">, opts: SubmitOptions = {}): Promise<Execution> {
    const wait = clampWait(opts.wait);
    return this.json("submitExecution", { body, query: { wait }, waitS: wait }, opts);
  }

  /**
   * Runs an agent and returns its final execution (COMPLETED, FAILED, TIMEOUT or CANCELLED: look at
   * `status`, `output` and `error`). Submits with `?wait=`, then polls `GET …?wait=` until the end or
   * `waitTimeoutMs`; then throws WaitTimeoutError (the execution goes on; its id is on the error).
   */
  async run(agentId: string, input: unknown, opts: RunOptions = {}): Promise<Execution> {
    const deadline = Date.now() + (opts.waitTimeoutMs ?? 300_000);
    const left = () => Math.max(0, Math.floor((deadline - Date.now()) / 1000));
    const body: BodyOf<"submitExecution"> = { agent_id: agentId, input };
    if (opts.version !== undefined) body.version = opts.version;
    if (opts.limits !== undefined) body.limits = opts.limits;
    if (opts.onBehalfOf !== undefined) body.on_behalf_of = opts.onBehalfOf;
    if (opts.webhookUrl !== undefined) body.webhook_url = opts.webhookUrl;
    let execution = await this.submit(body, { ...opts, idempotencyKey: opts.idempotencyKey ?? randomUUID(), wait: Math.min(MAX_WAIT_S, left()) });
    while (!isFinal(execution)) {
      if (Date.now() >= deadline) {
        throw new WaitTimeoutError(`execution ${execution.id} is still ${execution.status} after the time allowed`, execution);
      }
      execution = await this.getExecution(execution.id, { ...opts, wait: Math.max(1, Math.min(MAX_WAIT_S, left())) });
    }
    return execution;
  }

  /** GET /v1/executions/{id}; with `wait`, held until the execution ends (or `wait` s pass). */
  getExecution(id: string, opts: SubmitOptions = {}): Promise<Execution> {
    const wait = clampWait(opts.wait);
    return this.json("getExecution", { path: { id }, query: { wait }, waitS: wait }, opts);
  }

  listExecutions(query: QueryOf<"listExecutions"> = {}, opts?: RequestOptions): Promise<ExecutionPage> {
    return this.json("listExecutions", { query }, opts);
  }

  /** Every execution the caller may see, newest first, page after page. */
  executions(query: ListQuery<"listExecutions"> = {}, opts?: RequestOptions): AsyncGenerator<Execution> {
    return paginate((cursor) => this.listExecutions({ ...query, cursor }, opts));
  }

  cancel(id: string, opts?: RequestOptions): Promise<Execution> {
    return this.json("cancelExecution", { path: { id } }, opts);
  }

  /** The agent's log (stderr), as text. */
  async executionLog(id: string, opts?: RequestOptions): Promise<string> {
    return (await this.http.request<string>("getExecutionLog", { path: { id }, kind: "text" }, opts)).data;
  }

  /** The exact stdin bytes the task read (what a receipt's `input_sha256` is of). */
  async executionInput(id: string, opts?: RequestOptions): Promise<Uint8Array> {
    return (await this.http.request<Uint8Array>("getExecutionInput", { path: { id }, kind: "bytes" }, opts)).data;
  }

  /** The exact stdout bytes the task wrote, up to the cap (what a receipt's `output_sha256` is of). */
  async executionStdout(id: string, opts?: RequestOptions): Promise<Uint8Array> {
    return (await this.http.request<Uint8Array>("getExecutionStdout", { path: { id }, kind: "bytes" }, opts)).data;
  }

  /**
   * What the task sent through the egress gateway (every request; never a header or a body) and
   * the digest its receipt binds; `data` is null until the execution is final, and for an agent
   * without egress. Check it offline with `verifyReceipt(bundle, keys, { egress: data })`.
   */
  executionEgress(id: string, opts?: RequestOptions): Promise<ResponseOf<"getExecutionEgress">> {
    return this.json("getExecutionEgress", { path: { id } }, opts);
  }

  /**
   * POST /v1/executions/batch. Every item without an `idempotency_key` gets one (a UUID), which
   * makes the whole batch safe to retry: accepted items replay, refused ones are judged anew.
   */
  submitBatch(items: BatchItem[], opts: SubmitOptions = {}): Promise<BatchResult> {
    const keyed = items.map((item) => (item.idempotency_key ? item : { ...item, idempotency_key: randomUUID() }));
    const wait = clampWait(opts.wait);
    return this.json("submitExecutionBatch", { body: { items: keyed }, query: { wait }, waitS: wait, retrySafe: true }, opts);
  }

  /**
   * The execution's state changes as they happen (`GET /v1/executions/{id}/events`): `status` events,
   * `stderr` events with the task's stderr lines while it runs, then one `final` event with the whole
   * record, then the iterator ends. A stream cut short is
   * resumed (with `Last-Event-ID`) up to the client's retries.
   */
  async *events(executionId: string, opts: RequestOptions = {}): AsyncGenerator<ExecutionEvent> {
    let lastId: string | undefined;
    let failures = 0;
    const maxRetries = opts.maxRetries ?? this.http.maxRetries;
    for (;;) {
      const headers = { ...opts.headers, ...(lastId !== undefined ? { "last-event-id": lastId } : {}) };
      const answer = await this.http.request<Response>("streamExecutionEvents", { path: { id: executionId }, kind: "stream" },
        { ...opts, headers });
      const body = answer.data.body;
      if (!body) throw new NetworkError(`GET events of ${executionId}: the answer has no body`);
      try {
        for await (const message of parseEventStream(body)) {
          if (message.id !== undefined) lastId = message.id;
          failures = 0;
          if (message.event === "status" || message.event === "stderr" || message.event === "final") {
            const event = { event: message.event, id: message.id, data: JSON.parse(message.data) } as ExecutionEvent;
            yield event;
            if (event.event === "final") return;
          }
        }
      } catch (error) {
        if (opts.signal?.aborted || error instanceof SyntaxError) throw error;
        if (++failures > maxRetries) throw new NetworkError(`the event stream of ${executionId} broke: ${(error as Error).message}`, { cause: error });
        await sleep(this.http.backoff(failures - 1, undefined), opts.signal);
        continue;
      }
      // The stream ended without a final event (a proxy closed it): resume.
      if (++failures > maxRetries) throw new NetworkError(`the event stream of ${executionId} ended before the final event`);
      await sleep(this.http.backoff(failures - 1, undefined), opts.signal);
    }
  }

  // ---- agents ----------------------------------------------------------------------------------

  registerAgent(body: BodyOf<"registerAgent">, opts?: RequestOptions): Promise<Agent> {
    return this.json("registerAgent", { body }, opts);
  }

  listAgents(query: QueryOf<"listAgents"> = {}, opts?: RequestOptions): Promise<AgentPage> {
    return this.json("listAgents", { query }, opts);
  }

  agents(query: ListQuery<"listAgents"> = {}, opts?: RequestOptions): AsyncGenerator<Agent> {
    return paginate((cursor) => this.listAgents({ ...query, cursor }, opts));
  }

  getAgent(id: string, opts?: RequestOptions): Promise<Agent> {
    return this.json("getAgent", { path: { id } }, opts);
  }

  /** PUT the WASM module of a wasm agent's version 1. */
  uploadModule(id: string, module: Uint8Array, opts?: RequestOptions): Promise<ResponseOf<"uploadModule">> {
    return this.json("uploadModule", { path: { id }, rawBody: { bytes: module, contentType: "application/wasm" } }, opts);
  }

  uploadVersionModule(id: string, version: number, module: Uint8Array, opts?: RequestOptions): Promise<ResponseOf<"uploadVersionModule">> {
    return this.json("uploadVersionModule",
      { path: { id, version }, rawBody: { bytes: module, contentType: "application/wasm" } }, opts);
  }

  publishVersion(id: string, body: BodyOf<"publishVersion">, opts?: RequestOptions): Promise<ResponseOf<"publishVersion">> {
    return this.json("publishVersion", { path: { id }, body }, opts);
  }

  listVersions(id: string, query: QueryOf<"listVersions"> = {}, opts?: RequestOptions): Promise<ResponseOf<"listVersions">> {
    return this.json("listVersions", { path: { id }, query }, opts);
  }

  versions(agentId: string, query: ListQuery<"listVersions"> = {}, opts?: RequestOptions): AsyncGenerator<ResponseOf<"listVersions">["items"][number]> {
    return paginate((cursor) => this.listVersions(agentId, { ...query, cursor }, opts));
  }

  getVersion(id: string, version: number, opts?: RequestOptions): Promise<ResponseOf<"getVersion">> {
    return this.json("getVersion", { path: { id, version } }, opts);
  }

  deprecateVersion(id: string, version: number, opts?: RequestOptions): Promise<ResponseOf<"deprecateVersion">> {
    return this.json("deprecateVersion", { path: { id, version } }, opts);
  }

  withdrawVersion(id: string, version: number, opts?: RequestOptions): Promise<ResponseOf<"withdrawVersion">> {
    return this.json("withdrawVersion", { path: { id, version } }, opts);
  }

  agentStats(id: string, opts?: RequestOptions): Promise<AgentStats> {
    return this.json("agentStats", { path: { id } }, opts);
  }

  // ---- entitlements and tokens -----------------------------------------------------------------

  /** PUT /v1/entitlements: grant (201) or update (200) a user's entitlement to an agent. */
  grantEntitlement(body: BodyOf<"grantEntitlement">, opts?: RequestOptions): Promise<Entitlement> {
    return this.json("grantEntitlement", { body }, opts);
  }

  listEntitlements(query: QueryOf<"listEntitlements"> = {}, opts?: RequestOptions): Promise<EntitlementPage> {
    return this.json("listEntitlements", { query }, opts);
  }

  entitlements(query: ListQuery<"listEntitlements"> = {}, opts?: RequestOptions): AsyncGenerator<Entitlement> {
    return paginate((cursor) => this.listEntitlements({ ...query, cursor }, opts));
  }

  revokeEntitlement(id: string, opts?: RequestOptions): Promise<Entitlement> {
    return this.json("revokeEntitlement", { path: { id } }, opts);
  }

  /** POST /v1/tokens: the answer holds the secret (`token`), shown only here. */
  createToken(body: BodyOf<"createToken">, opts?: RequestOptions): Promise<IssuedToken> {
    return this.json("createToken", { body }, opts);
  }

  listTokens(query: QueryOf<"listTokens"> = {}, opts?: RequestOptions): Promise<TokenPage> {
    return this.json("listTokens", { query }, opts);
  }

  tokens(query: ListQuery<"listTokens"> = {}, opts?: RequestOptions): AsyncGenerator<Token> {
    return paginate((cursor) => this.listTokens({ ...query, cursor }, opts));
  }

  revokeToken(id: string, opts?: RequestOptions): Promise<Token> {
    return this.json("revokeToken", { path: { id } }, opts);
  }

  // ---- receipts and the log --------------------------------------------------------------------

  /** The receipt bundle: envelope, witnesses, inclusion proof, and the signed head it is against (`treeSize`: that head). */
  receipt(executionId: string, opts: RequestOptions & { treeSize?: number } = {}): Promise<ReceiptBundle> {
    return this.json("getReceipt", { path: { id: executionId }, query: { tree_size: opts.treeSize } }, opts);
  }

  attestReceipt(executionId: string, body: Attestation, opts?: RequestOptions): Promise<ReceiptBundle> {
    return this.json("attestReceipt", { path: { id: executionId }, body }, opts);
  }

  /** The published signing keys (a JWK set): keep it, and verify receipts offline with `verifyReceipt`. */
  keys(opts?: RequestOptions): Promise<KeySet> {
    return this.json("getKeys", {}, opts);
  }

  logHead(opts?: RequestOptions): Promise<SignedLogHead> {
    return this.json("getLogHead", {}, opts);
  }

  inclusionProof(index: number, size: number, opts?: RequestOptions): Promise<InclusionProof> {
    return this.json("getInclusionProof", { query: { index, size } }, opts);
  }

  consistencyProof(from: number, to: number, opts?: RequestOptions): Promise<ConsistencyProof> {
    return this.json("getConsistencyProof", { query: { from, to } }, opts);
  }

  /** POST /v1/receipts/verify: the service's own verifier, against its own keys (see `verifyReceipt` to trust none of it). */
  verifyReceiptOnServer(body: BodyOf<"verifyReceipt">, opts?: RequestOptions): Promise<VerifyReport> {
    return this.json("verifyReceipt", { body, retrySafe: true }, opts);
  }

  // --- secrets (docs/secrets.md): write-only; no answer ever carries a value -------------------

  /** Write or replace a secret of an agent, for the egress gateway to inject. */
  putSecret(agentId: string, name: string, value: string, opts?: RequestOptions): Promise<ResponseOf<"putSecret">> {
    return this.json("putSecret", { path: { id: agentId, name }, body: { value } }, opts);
  }

  /** An agent's secrets by name and version; never their values. */
  listSecrets(agentId: string, query: QueryOf<"listSecrets"> = {}, opts?: RequestOptions
  ): Promise<ResponseOf<"listSecrets">> {
    return this.json("listSecrets", { path: { id: agentId }, query }, opts);
  }

  async deleteSecret(agentId: string, name: string, opts?: RequestOptions): Promise<void> {
    await this.http.request("deleteSecret", { path: { id: agentId, name }, kind: "none" }, opts);
  }

  /** Operators: seal again every secret still under a previous key (after a key rotation). */
  resealSecrets(opts?: RequestOptions): Promise<ResponseOf<"resealSecrets">> {
    return this.json("resealSecrets", {}, opts);
  }

  // ---- webhooks --------------------------------------------------------------------------------

  /** The caller's endpoint: its default URL and its `whsec_` signing secret. */
  webhookEndpoint(opts?: RequestOptions): Promise<WebhookEndpoint> {
    return this.json("getWebhookEndpoint", {}, opts);
  }

  /** Sets (or with null removes) the caller's default webhook URL. */
  setWebhookEndpoint(url: string | null, opts?: RequestOptions): Promise<WebhookEndpoint> {
    return this.json("setWebhookEndpoint", { body: { url } }, opts);
  }

  rotateWebhookSecret(opts?: RequestOptions): Promise<WebhookEndpoint> {
    return this.json("rotateWebhookSecret", {}, opts);
  }

  listWebhookDeliveries(executionId: string, query: QueryOf<"listExecutionWebhooks"> = {}, opts?: RequestOptions): Promise<WebhookDeliveries> {
    return this.json("listExecutionWebhooks", { path: { id: executionId }, query }, opts);
  }

  webhookDeliveries(executionId: string, query: ListQuery<"listExecutionWebhooks"> = {}, opts?: RequestOptions): AsyncGenerator<WebhookDelivery> {
    return paginate((cursor) => this.listWebhookDeliveries(executionId, { ...query, cursor }, opts));
  }

  /** Queue a failed delivery once more (the same webhook-id; its attempts so far are kept). */
  resendWebhookDelivery(executionId: string, deliveryId: string, opts?: RequestOptions): Promise<WebhookDelivery> {
    return this.json("resendExecutionWebhook", { path: { id: executionId, delivery_id: deliveryId } }, opts);
  }

  // ---- images (operators) ----------------------------------------------------------------------

  listImages(query: QueryOf<"listImages"> = {}, opts?: RequestOptions): Promise<ImageList> {
    return this.json("listImages", { query }, opts);
  }

  images(query: ListQuery<"listImages"> = {}, opts?: RequestOptions): AsyncGenerator<Image> {
    return paginate((cursor) => this.listImages({ ...query, cursor }, opts));
  }

  buildImages(body: BodyOf<"buildImages">, opts?: RequestOptions): Promise<ImageBuildResult> {
    return this.json("buildImages", { body }, opts);
  }

  /** DELETE /v1/images/{ref} (the reference may hold slashes: `executor/busybox:latest`). */
  async deleteImage(ref: string, opts?: RequestOptions): Promise<void> {
    await this.http.request("deleteImage", { path: { ref }, kind: "none" }, opts);
  }
}

/** Items of page after page, following `next_cursor` until it is null. */
export async function* paginate<T>(page: (cursor: string | undefined) => Promise<Page<T>>): AsyncGenerator<T> {
  let cursor: string | undefined;
  do {
    const answer = await page(cursor);
    yield* answer.items;
    cursor = answer.next_cursor ?? undefined;
  } while (cursor !== undefined);
}

export function isFinal(execution: Pick<Execution, "status">): boolean {
  return FINAL_STATUSES.includes(execution.status);
}

function clampWait(wait: number | undefined): number | undefined {
  return wait === undefined ? undefined : Math.max(0, Math.min(MAX_WAIT_S, wait));
}

