/**
 * Every error the SDK throws, as one tree:
 *
 *   ExecutorError
 *   ├── ApiError                      the service answered with a problem (RFC 9457) or an unexpected status
 *   │   ├── MalformedRequestError     one subclass per problem slug of the document (`PROBLEM_CLASSES`),
 *   │   ├── InputInvalidError         named after the slug: `input_invalid` → InputInvalidError
 *   │   ├── EntitlementError          the four entitlement refusals share this parent
 *   │   │   ├── EntitlementMissingError, EntitlementExpiredError,
 *   │   │   └── EntitlementRevokedError, EntitlementUsedUpError
 *   │   ├── RateLimitedError, TooManyLiveExecutionsError, QueueFullError, …   (`retryAfter` set)
 *   │   └── …
 *   ├── NetworkError                  no answer: connection refused or reset, DNS, a stream cut short
 *   │   └── TimeoutError              no answer within the time allowed
 *   │       └── WaitTimeoutError      `run` gave up waiting for the execution to end (`execution` is its last state)
 *   ├── WebhookVerificationError      a webhook whose headers are missing, stale or not signed by the secret
 *   └── JwkError                      a key set or JWK that is not an acceptable Ed25519 public key
 *
 * `isProblem(err, "entitlement_used_up")` tells a problem by its slug without importing its class.
 */
import type { components } from "./generated/schema.js";
import { PROBLEM_TYPE_PREFIX, type ProblemSlug, type OperationId } from "./generated/problems.js";

export type Problem = components["schemas"]["Problem"];
export type Violation = components["schemas"]["Violation"];
type Execution = components["schemas"]["Execution"];

export class ExecutorError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export interface ApiErrorInit {
  status: number;
  problem?: Problem | undefined;
  headers?: Headers | undefined;
  operationId?: OperationId | undefined;
  /** The body when it was not a problem document. */
  body?: string | undefined;
}

/** The service refused or failed a request. `slug` is set when the answer was a problem document. */
export class ApiError extends ExecutorError {
  readonly status: number;
  /** The RFC 9457 problem document as received (absent when the body was not one). */
  readonly problem: Problem | undefined;
  /** `urn:executor:problem:<slug>` */
  readonly type: string | undefined;
  /** The stable part of `type`: `input_invalid`, `entitlement_used_up`, … (a slug newer than this SDK is kept as is) */
  readonly slug: ProblemSlug | (string & {}) | undefined;
  readonly title: string | undefined;
  readonly detail: string | undefined;
  /** What was refused and where (JSON pointers into the body, `?name`, `header:Name`). */
  readonly errors: Violation[];
  /** Seconds to wait before trying again (the `Retry-After` header), when the service said. */
  readonly retryAfter: number | undefined;
  readonly headers: Headers | undefined;
  readonly operationId: OperationId | undefined;

  constructor(init: ApiErrorInit) {
    const problem = init.problem;
    super(problem ? `${init.status} ${problem.title}: ${problem.detail}`
      : `HTTP ${init.status}${init.body ? `: ${init.body.slice(0, 300)}` : ""}`);
    this.status = init.status;
    this.problem = problem;
    this.type = problem?.type;
    this.slug = problem ? slugOf(problem.type) : undefined;
    this.title = problem?.title;
    this.detail = problem?.detail;
    this.errors = problem?.errors ?? [];
    this.headers = init.headers;
    this.operationId = init.operationId;
    this.retryAfter = parseRetryAfterSeconds(init.headers?.get("retry-after") ?? null);
  }
}

// One class per problem slug. The map below must name every slug of the document: adding one to
// openapi.json and regenerating fails `npm run typecheck` until its class is here.
export class MalformedRequestError extends ApiError {}
export class UnauthenticatedError extends ApiError {}
export class ForbiddenError extends ApiError {}
export class NotFoundError extends ApiError {}
export class ConflictError extends ApiError {}
export class PayloadTooLargeError extends ApiError {}
export class RequestInvalidError extends ApiError {}
export class InputInvalidError extends ApiError {}
export class SchemaInvalidError extends ApiError {}
export class LimitExceededError extends ApiError {}
export class IdempotencyKeyReusedError extends ApiError {}
export class ImageNotFoundError extends ApiError {}
export class ModuleInvalidError extends ApiError {}
export class RuntimeUnavailableError extends ApiError {}
export class AttestationInvalidError extends ApiError {}
export class AgentVersionWithdrawnError extends ApiError {}
export class ExecutionBodiesDeletedError extends ApiError {}
export class ReceiptUnavailableError extends ApiError {}
/** The caller holds no usable entitlement to the agent. */
export class EntitlementError extends ApiError {}
export class EntitlementMissingError extends EntitlementError {}
export class EntitlementExpiredError extends EntitlementError {}
export class EntitlementRevokedError extends EntitlementError {}
export class EntitlementUsedUpError extends EntitlementError {}
export class RateLimitedError extends ApiError {}
export class TooManyLiveExecutionsError extends ApiError {}
export class QueueFullError extends ApiError {}
export class QueueUnavailableError extends ApiError {}
export class WasmRuntimeUnavailableError extends ApiError {}

export const PROBLEM_CLASSES = {
  malformed_request: MalformedRequestError,
  unauthenticated: UnauthenticatedError,
  forbidden: ForbiddenError,
  not_found: NotFoundError,
  conflict: ConflictError,
  payload_too_large: PayloadTooLargeError,
  request_invalid: RequestInvalidError,
  input_invalid: InputInvalidError,
  schema_invalid: SchemaInvalidError,
  limit_exceeded: LimitExceededError,
  idempotency_key_reused: IdempotencyKeyReusedError,
  image_not_found: ImageNotFoundError,
  module_invalid: ModuleInvalidError,
  runtime_unavailable: RuntimeUnavailableError,
  attestation_invalid: AttestationInvalidError,
  agent_version_withdrawn: AgentVersionWithdrawnError,
  execution_bodies_deleted: ExecutionBodiesDeletedError,
  receipt_unavailable: ReceiptUnavailableError,
  entitlement_missing: EntitlementMissingError,
  entitlement_expired: EntitlementExpiredError,
  entitlement_revoked: EntitlementRevokedError,
  entitlement_used_up: EntitlementUsedUpError,
  rate_limited: RateLimitedError,
  too_many_live_executions: TooManyLiveExecutionsError,
  queue_full: QueueFullError,
  queue_unavailable: QueueUnavailableError,
  wasm_runtime_unavailable: WasmRuntimeUnavailableError,
} as const satisfies Record<ProblemSlug, typeof ApiError>;

/** The error for an answer: the slug's class for a problem document, else a plain ApiError. */
export function apiErrorFor(init: ApiErrorInit): ApiError {
  const slug = init.problem ? slugOf(init.problem.type) : undefined;
  const Class: typeof ApiError = slug !== undefined && isKnownSlug(slug) ? PROBLEM_CLASSES[slug] : ApiError;
  return new Class(init);
}

/** Whether `err` is the service's problem `slug` (e.g. `isProblem(err, "entitlement_used_up")`). */
export function isProblem<S extends ProblemSlug>(err: unknown, slug: S): err is InstanceType<(typeof PROBLEM_CLASSES)[S]> {
  return err instanceof ApiError && err.slug === slug;
}

/** No answer from the service (the request may or may not have been processed). */
export class NetworkError extends ExecutorError {}

/** No answer within the time allowed. */
export class TimeoutError extends NetworkError {}

/** `run` stopped waiting before the execution ended; it goes on running on the service. */
export class WaitTimeoutError extends TimeoutError {
  readonly execution: Execution;
  constructor(message: string, execution: Execution) {
    super(message);
    this.execution = execution;
  }
}

/** A webhook message that does not verify: missing headers, a stale timestamp or a wrong signature. */
export class WebhookVerificationError extends ExecutorError {}

/** A JWK or JWK set that is not an acceptable Ed25519 public key. */
export class JwkError extends ExecutorError {}

function slugOf(type: unknown): string | undefined {
  return typeof type === "string" && type.startsWith(PROBLEM_TYPE_PREFIX) ? type.slice(PROBLEM_TYPE_PREFIX.length) : undefined;
}

function isKnownSlug(slug: string): slug is ProblemSlug {
  return Object.hasOwn(PROBLEM_CLASSES, slug);
}

/** `Retry-After` as seconds: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); undefined if absent or unreadable. */
export function parseRetryAfterSeconds(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, (at - now) / 1000);
}
