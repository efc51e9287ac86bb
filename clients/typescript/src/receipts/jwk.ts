/**
 * Ed25519 public keys as JWKs (RFC 8037 "OKP") and their key ids (RFC 7638 thumbprints), ported
 * from the service's executor/receipts/jwk.py. A `kid` that is not the key's thumbprint is refused.
 */
import { createHash } from "node:crypto";
import { ed25519 } from "@noble/curves/ed25519.js";
import { JwkError } from "../errors.js";
import { isObject, jsonType } from "./dsse.js";

const ACCEPTED_ALGS = new Set(["EdDSA", "Ed25519"]);
const B64URL = /^[A-Za-z0-9_-]*$/;

/** Trusted keys by key id. */
export type KeyRing = ReadonlyMap<string, Uint8Array>;

/** The RFC 7638 thumbprint of an Ed25519 public key: base64url(SHA-256 of {"crv","kty","x"}). */
export function keyId(publicKey: Uint8Array): string {
  const members = `{"crv":"Ed25519","kty":"OKP","x":"${b64url(publicKey)}"}`;
  return b64url(createHash("sha256").update(members, "ascii").digest());
}

/** The 32-byte public key of a JWK; throws JwkError for anything but an Ed25519 public key with a true kid. */
export function fromJwk(data: unknown): Uint8Array {
  if (!isObject(data)) throw new JwkError(`a JWK must be a JSON object, not ${jsonType(data)}`);
  if ("d" in data) throw new JwkError('the JWK has a private part ("d"): refused, and that private key must be treated as leaked');
  if (data.kty !== "OKP") throw new JwkError(`kty must be 'OKP', not ${JSON.stringify(data.kty)}`);
  if (data.crv !== "Ed25519") throw new JwkError(`crv must be 'Ed25519', not ${JSON.stringify(data.crv)}`);
  const key = publicBytes(data.x);
  if ("kid" in data && data.kid !== keyId(key)) {
    throw new JwkError(`kid ${JSON.stringify(data.kid)} is not the key's RFC 7638 thumbprint ${JSON.stringify(keyId(key))}`);
  }
  if ("alg" in data && !ACCEPTED_ALGS.has(data.alg as string)) throw new JwkError(`alg must be EdDSA or Ed25519, not ${JSON.stringify(data.alg)}`);
  if ("use" in data && data.use !== "sig") throw new JwkError(`use must be 'sig', not ${JSON.stringify(data.use)}`);
  return key;
}

/**
 * Keys by their thumbprint from a JWK set (`GET /v1/keys`), an array of JWKs, a single JWK, or a
 * ready KeyRing; throws JwkError naming the bad entry.
 */
export function parseKeySet(data: unknown): Map<string, Uint8Array> {
  if (data instanceof Map) return new Map(data as Map<string, Uint8Array>);
  let labelled: [string, unknown][];
  if (Array.isArray(data) || (isObject(data) && "keys" in data)) {
    const entries = Array.isArray(data) ? data : (data as { keys: unknown }).keys;
    if (!Array.isArray(entries)) throw new JwkError(`keys must be an array, not ${jsonType(entries)}`);
    if (entries.length === 0) throw new JwkError("the key set has no keys");
    labelled = entries.map((entry, position) => [`keys[${position}]`, entry]);
  } else {
    labelled = [["the JWK", data]];
  }
  const found = new Map<string, Uint8Array>();
  for (const [label, entry] of labelled) {
    let key: Uint8Array;
    try {
      key = fromJwk(entry);
    } catch (error) {
      throw new JwkError(`${label}: ${(error as Error).message}`);
    }
    const kid = keyId(key);
    if (found.has(kid)) throw new JwkError(`${label}: key ${kid} appears twice`);
    found.set(kid, key);
  }
  return found;
}

function publicBytes(x: unknown): Uint8Array {
  if (x === undefined || x === null) throw new JwkError("the JWK has no x (the public key)");
  if (typeof x !== "string") throw new JwkError(`x must be a string, not ${jsonType(x)}`);
  if (!B64URL.test(x) || x.length % 4 === 1) throw new JwkError("x is not unpadded base64url");
  const raw = new Uint8Array(Buffer.from(x, "base64url"));
  if (b64url(raw) !== x) throw new JwkError("x is not canonical base64url (non-zero bits in the last character)");
  if (raw.length !== 32) throw new JwkError(`x must encode 32 bytes, not ${raw.length}`);
  // As libsodium's crypto_core_ed25519_is_valid_point: canonical, on the curve, not of small order, in the main subgroup.
  try {
    const point = ed25519.Point.fromBytes(raw, false);
    if (point.isSmallOrder() || !point.isTorsionFree()) throw new Error("small order");
  } catch {
    throw new JwkError("x is not a valid Ed25519 public key");
  }
  return raw;
}

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64url");
}
