/** Names for the document's schemas and the operations' parameters, answers and bodies (all generated). */
import type { components, operations } from "./generated/schema.js";

export type Schemas = components["schemas"];

export type Execution = Schemas["Execution"];
export type ExecutionStatus = Execution["status"];
export type ExecutionPage = Schemas["ExecutionPage"];
export type SubmitExecution = Schemas["SubmitExecution"];
export type BatchItem = Schemas["BatchItem"];
export type BatchResult = Schemas["BatchResult"];
export type BatchItemResult = Schemas["BatchItemResult"];
export type Limits = Schemas["Limits"];
export type Agent = Schemas["Agent"];
export type AgentPage = Schemas["AgentPage"];
export type AgentStats = Schemas["AgentStats"];
export type RegisterAgent = Schemas["RegisterAgent"];
export type PublishVersion = Schemas["PublishVersion"];
export type Pricing = Schemas["Pricing"];
export type Entitlement = Schemas["Entitlement"];
export type EntitlementPage = Schemas["EntitlementPage"];
export type GrantEntitlement = Schemas["GrantEntitlement"];
export type Token = Schemas["Token"];
export type TokenPage = Schemas["TokenPage"];
export type IssuedToken = Schemas["IssuedToken"];
export type CreateToken = Schemas["CreateToken"];
export type ReceiptBundle = Schemas["ReceiptBundle"];
export type KeySet = Schemas["KeySet"];
export type Jwk = Schemas["Jwk"];
export type SignedLogHead = Schemas["SignedLogHead"];
export type InclusionProof = Schemas["InclusionProof"];
export type ConsistencyProof = Schemas["ConsistencyProof"];
export type Attestation = Schemas["Attestation"];
export type VerifyReceiptRequest = Schemas["VerifyReceipt"];
export type VerifyReport = Schemas["VerifyReport"];
export type WebhookEndpoint = Schemas["WebhookEndpoint"];
export type WebhookDelivery = Schemas["WebhookDelivery"];
export type WebhookDeliveries = Schemas["WebhookDeliveries"];
export type Image = Schemas["Image"];
export type ImageList = Schemas["ImageList"];
export type ImageBuildResult = Schemas["ImageBuildResult"];
export type BuildImages = Schemas["BuildImages"];
export type Status = Schemas["Status"];
export type Health = Schemas["Health"];
export type Readiness = Schemas["Readiness"];

type Success = 200 | 201 | 202 | 204;

/** The JSON answer of an operation (the union over its 2xx answers). */
export type ResponseOf<O extends keyof operations> = {
  [C in keyof operations[O]["responses"]]: C extends Success
    ? operations[O]["responses"][C] extends { content: { "application/json": infer T } } ? T : never
    : never;
}[keyof operations[O]["responses"]];

/** The JSON body an operation takes. */
export type BodyOf<O extends keyof operations> =
  NonNullable<operations[O]["requestBody"]> extends { content: { "application/json": infer B } } ? B : never;

/** The query parameters an operation takes. */
export type QueryOf<O extends keyof operations> = NonNullable<operations[O]["parameters"]["query"]>;

/** The state an `event: status` carries. */
export interface ExecutionState {
  id: string;
  status: ExecutionStatus;
  error: Execution["error"];
  started_at: string | null;
  finished_at: string | null;
}

/** What an `event: stderr` carries: one line of the task's stderr, or how many lines went unsent (over the caps). */
export type StderrLine = { line: string; seq: number } | { dropped: number };

/** One event of `GET /v1/executions/{id}/events`: the state at each change, the task's stderr lines while it
 * runs (a live view, not replayed on a resume), then the final record. */
export type ExecutionEvent =
  | { event: "status"; id: string | undefined; data: ExecutionState }
  | { event: "stderr"; id: string | undefined; data: StderrLine }
  | { event: "final"; id: string | undefined; data: Execution };

export const FINAL_STATUSES: readonly ExecutionStatus[] = ["COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"];
