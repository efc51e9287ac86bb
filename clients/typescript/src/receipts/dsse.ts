/**
 * DSSE v1 envelopes (https://github.com/secure-systems-lab/dsse) checked with Ed25519, ported from
 * the service's executor/receipts/dsse.py: the signature covers the Pre-Authentication Encoding
 * of the payload type and the payload bytes, never the JSON around them.
 */
import { ed25519 } from "@noble/curves/ed25519.js";

export const RECEIPT_PAYLOAD_TYPE = "application/vnd.executor.receipt+json";
export const TREE_HEAD_PAYLOAD_TYPE = "application/vnd.executor.tree-head+json";

export class EnvelopeError extends Error {}

export interface Signature {
  keyid: string;
  sig: Uint8Array;
}

export interface Envelope {
  payloadType: string;
  payload: Uint8Array;
  signatures: Signature[];
}

const STANDARD_B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const URLSAFE_B64 = /^[A-Za-z0-9_-]*={0,2}$/;
const LONE_SURROGATE = /\p{Cs}/u;

/** A DSSE JSON envelope parsed strictly; throws EnvelopeError naming the field at fault. */
export function parseEnvelope(data: unknown): Envelope {
  if (!isObject(data)) throw new EnvelopeError(`envelope must be a JSON object, not ${jsonType(data)}`);
  const payloadType = text(data, "payloadType", "envelope");
  const payload = b64decode(text(data, "payload", "envelope", true), "payload");
  if (!("signatures" in data)) throw new EnvelopeError("envelope has no 'signatures' member");
  const raw = data.signatures;
  if (!Array.isArray(raw)) throw new EnvelopeError(`signatures must be an array, not ${jsonType(raw)}`);
  if (raw.length === 0) throw new EnvelopeError("signatures is empty: an envelope needs at least one signature");
  const seen = new Set<string>();
  const signatures = raw.map((entry: unknown, position): Signature => {
    const where = `signatures[${position}]`;
    if (!isObject(entry)) throw new EnvelopeError(`${where} must be a JSON object, not ${jsonType(entry)}`);
    const keyid = text(entry, "keyid", where);
    if (seen.has(keyid)) throw new EnvelopeError(`${where}: duplicate keyid ${JSON.stringify(keyid)}`);
    seen.add(keyid);
    return { keyid, sig: b64decode(text(entry, "sig", where), `${where}.sig`) };
  });
  return { payloadType, payload, signatures };
}

/** DSSE v1 PAE: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body. */
export function pae(payloadType: string, payload: Uint8Array): Uint8Array {
  const type = new TextEncoder().encode(payloadType);
  const head = new TextEncoder().encode(`DSSEv1 ${type.length} `);
  const middle = new TextEncoder().encode(` ${payload.length} `);
  const out = new Uint8Array(head.length + type.length + middle.length + payload.length);
  out.set(head, 0);
  out.set(type, head.length);
  out.set(middle, head.length + type.length);
  out.set(payload, head.length + type.length + middle.length);
  return out;
}

/** Whether `signature` is `publicKey`'s Ed25519 signature of the envelope's PAE; false, never an error, if not. */
export function signatureHolds(envelope: Envelope, signature: Signature, publicKey: Uint8Array): boolean {
  if (signature.sig.length !== 64) return false;
  try {
    return ed25519.verify(signature.sig, pae(envelope.payloadType, envelope.payload), publicKey, { zip215: false });
  } catch {
    return false;
  }
}

function text(data: Record<string, unknown>, name: string, where: string, allowEmpty = false): string {
  if (!(name in data)) throw new EnvelopeError(`${where} has no '${name}' member`);
  const value = data[name];
  const label = where === "envelope" ? name : `${where}.${name}`;
  if (typeof value !== "string") throw new EnvelopeError(`${label} must be a string, not ${jsonType(value)}`);
  if (!value && !allowEmpty) throw new EnvelopeError(`${label} is empty`);
  if (LONE_SURROGATE.test(value)) throw new EnvelopeError(`${label} is not valid Unicode (lone surrogate)`);
  return value;
}

/** Strict base64: one alphabet, correct padding, no whitespace, canonical (re-encodes to the same text). */
export function b64decode(value: string, label: string): Uint8Array {
  let urlsafe: boolean;
  if (STANDARD_B64.test(value)) urlsafe = false;
  else if (URLSAFE_B64.test(value)) urlsafe = true;
  else throw new EnvelopeError(`${label} is not base64`);
  const standard = urlsafe ? value.replace(/-/g, "+").replace(/_/g, "/") : value;
  if (standard.length % 4 !== 0) throw new EnvelopeError(`${label} is not base64: incorrect padding`);
  const bytes = Buffer.from(standard, "base64");
  if (bytes.toString("base64") !== standard) {
    throw new EnvelopeError(`${label} is not canonical base64 (non-zero bits in the last character)`);
  }
  return new Uint8Array(bytes);
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "object": return "an object";
    case "string": return "a string";
    case "boolean": return "a boolean";
    case "number": return "a number";
    default: return typeof value;
  }
}
