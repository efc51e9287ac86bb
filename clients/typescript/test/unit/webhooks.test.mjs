// Webhook verification (Standard Webhooks), against a message signed as the service signs it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { verifyWebhook, WebhookVerificationError } from "../../dist/index.js";

const secret = "whsec_" + randomBytes(32).toString("base64");
const body = JSON.stringify({ type: "execution.completed", timestamp: new Date().toISOString(), data: { execution: { id: "e1" } } });

// executor/webhooks/signing.py: v1,base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))
function sign(id, timestamp, payload, key = secret) {
  const raw = Buffer.from(key.slice("whsec_".length), "base64");
  return "v1," + createHmac("sha256", raw).update(`${id}.${timestamp}.${payload}`).digest("base64");
}

test("a message signed with the secret verifies; headers in any form", () => {
  const stamp = Math.floor(Date.now() / 1000);
  const headers = { "webhook-id": "msg_1", "webhook-timestamp": String(stamp), "webhook-signature": sign("msg_1", stamp, body) };
  assert.equal(verifyWebhook(secret, headers, body).data.execution.id, "e1");
  assert.equal(verifyWebhook(secret, new Headers(headers), Buffer.from(body)).type, "execution.completed");
  const upper = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
  assert.equal(verifyWebhook(secret, upper, body).type, "execution.completed");
  // A rotation: several signatures, one of them good.
  const rotated = { ...headers, "webhook-signature": `v1,${Buffer.alloc(32).toString("base64")} ${headers["webhook-signature"]}` };
  assert.equal(verifyWebhook(secret, rotated, body).type, "execution.completed");
});

test("a wrong signature, a stale timestamp, missing headers or another body throw WebhookVerificationError", () => {
  const stamp = Math.floor(Date.now() / 1000);
  const good = { "webhook-id": "msg_1", "webhook-timestamp": String(stamp), "webhook-signature": sign("msg_1", stamp, body) };
  const other = "whsec_" + randomBytes(32).toString("base64");
  const old = stamp - 3600;
  for (const [headers, payload] of [
    [{ ...good, "webhook-signature": sign("msg_1", stamp, body, other) }, body],
    [{ ...good, "webhook-timestamp": String(old), "webhook-signature": sign("msg_1", old, body) }, body],
    [{ "webhook-id": "msg_1" }, body],
    [good, body.replace("e1", "e2")],
  ]) {
    assert.throws(() => verifyWebhook(secret, headers, payload), WebhookVerificationError);
  }
});
