/**
 * Webhook messages (Standard Webhooks, https://www.standardwebhooks.com/): the service POSTs the
 * final execution and its signed receipt to the endpoint set with `setWebhookEndpoint`, signed
 * with the endpoint's `whsec_` secret (executor/webhooks/signing.py).
 */
import { Webhook, WebhookVerificationError as SpecError } from "standardwebhooks";
import { WebhookVerificationError } from "./errors.js";
import type { components } from "./generated/schema.js";

export type WebhookEventType = "execution.completed" | "execution.failed" | "execution.timeout" | "execution.cancelled";

/** The body of one delivery: `{type, timestamp, data: {execution, receipt}}`. */
export interface WebhookEvent {
  type: WebhookEventType;
  timestamp: string;
  data: {
    execution: components["schemas"]["Execution"];
    /** The receipt's envelope and its log index; its inclusion proof is `GET /v1/executions/{id}/receipt`. */
    receipt: { envelope: components["schemas"]["DsseEnvelope"]; log_index: number };
  };
}

/** Request headers as Node's `IncomingHttpHeaders`, a fetch `Headers`, or a plain record. */
export type HeadersLike = Headers | Record<string, string | string[] | undefined>;

/**
 * The parsed payload of a webhook request whose `webhook-id`, `webhook-timestamp` (within five
 * minutes) and `webhook-signature` hold for `body` under `secret`; throws WebhookVerificationError
 * otherwise. Pass the body exactly as received (a Buffer or its text), not re-encoded JSON.
 */
export function verifyWebhook(secret: string, headers: HeadersLike, body: string | Uint8Array): WebhookEvent {
  const flat: Record<string, string> = {};
  if (headers instanceof Headers) {
    headers.forEach((value, name) => { flat[name.toLowerCase()] = value; });
  } else {
    for (const [name, value] of Object.entries(headers)) {
      if (value !== undefined) flat[name.toLowerCase()] = Array.isArray(value) ? value.join(" ") : value;
    }
  }
  let payload: unknown;
  try {
    payload = new Webhook(secret).verify(body, flat);
  } catch (error) {
    if (error instanceof SpecError || (error as Error)?.name === "WebhookVerificationError") {
      throw new WebhookVerificationError((error as Error).message, { cause: error });
    }
    throw new WebhookVerificationError(`the message cannot be verified: ${(error as Error)?.message ?? error}`, { cause: error });
  }
  if (typeof payload !== "object" || payload === null || typeof (payload as WebhookEvent).type !== "string") {
    throw new WebhookVerificationError("the signed body is not a webhook event ({type, timestamp, data})");
  }
  return payload as WebhookEvent;
}
