/**
 * @executor/client: the TypeScript SDK of the executor API.
 *
 *   const executor = new Executor({ baseUrl, token });
 *   const execution = await executor.run(agentId, { text: "hello" });
 */
export { CONSOLE_ASSETS, Executor, METHOD_FOR_OPERATION, MAX_WAIT_S, paginate, isFinal } from "./client.js";
export type { SubmitOptions, RunOptions } from "./client.js";
export type { ClientOptions, RequestOptions, FetchLike } from "./http.js";
export * from "./errors.js";
export type * from "./types.js";
export { FINAL_STATUSES } from "./types.js";
export { verifyWebhook } from "./webhooks.js";
export type { WebhookEvent, WebhookEventType, HeadersLike } from "./webhooks.js";
export { verifyReceipt, sha256Hex, egressDigest } from "./receipts/verify.js";
export type { VerifyResult, VerifyOptions, Failure, SignatureCheck, ReceiptStatement, TreeHead, TrustedKeys, EgressDigest } from "./receipts/verify.js";
export { parseKeySet, keyId, fromJwk } from "./receipts/jwk.js";
export { pae, RECEIPT_PAYLOAD_TYPE, TREE_HEAD_PAYLOAD_TYPE } from "./receipts/dsse.js";
export { leafHash, nodeHash, verifyInclusion } from "./receipts/merkle.js";
export { parseEventStream, type ServerSentEvent } from "./sse.js";
export { API_VERSION, OPERATIONS, OPERATION_IDS, PROBLEM_STATUSES, PROBLEM_TYPE_PREFIX } from "./generated/problems.js";
export type { OperationId, ProblemSlug } from "./generated/problems.js";
export type { paths, components, operations } from "./generated/schema.js";
