// Receipt verification in the browser: a port of executor/receipts/verify.py, dsse.py, merkle.py,
// jwk.py and statement.py onto WebCrypto (Ed25519, SHA-256). Only public keys, the bundle and
// what the caller brings; each failed check adds {reason, detail} with the server's reason codes
// (docs/receipts.md), so the page and `executor receipts verify` name a fault alike.
//
// Not ported: the key-retirement note (the browser only knows the published keys, so a retired
// key is `unknown_key`, as for any verifier holding the JWK set) and the Ed25519 point check of
// jwk.py (WebCrypto refuses what it cannot use; a signature under a bad point does not hold).

export const RECEIPT_PAYLOAD_TYPE = "application/vnd.executor.receipt+json";
export const TREE_HEAD_PAYLOAD_TYPE = "application/vnd.executor.tree-head+json";

const FIELDS = {
  receipt_version: ["int"], log_id: ["str"], log_index: ["int"], key_id: ["str"], issued_at: ["time"],
  execution_id: ["str"], owner: ["str"], agent_id: ["str"], agent_version: ["int"], agent_kind: ["str"],
  image_digest: ["str", "null"], module_sha256: ["str", "null"], oci_runtime: ["str", "null"],
  input_sha256: ["str"], input_bytes: ["int"], output_sha256: ["str", "null"], output_bytes: ["int", "null"],
  status: ["str"], error_type: ["str", "null"], exit_code: ["int", "null"], created_at: ["time"],
  started_at: ["time", "null"], finished_at: ["time", "null"], usage: ["object"], cost: ["object", "null"],
};
const USAGE_FIELDS = ["wall_ms", "cpu_ms", "peak_memory_bytes", "fuel_consumed"];
const HEAD_FIELDS = { log_id: "str", tree_size: "int", root_hash: "str", timestamp: "str", key_id: "str" };

export class Report {
  constructor() {
    this.failures = [];
    this.signatures = [];
    this.statement = null;
    this.head = null;
  }
  get valid() { return this.failures.length === 0; }
  fail(reason, detail) { this.failures.push({ reason, detail }); }
}

class EnvelopeError extends Error {}
class JwkError extends Error {}

// -- bytes, base64, hashes -----------------------------------------------------------------------

const utf8 = new TextEncoder();

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const fromHex = (hex) => Uint8Array.from(hex.match(/../g) || [], (h) => parseInt(h, 16));
const binary = (bytes) => Array.from(bytes, (b) => String.fromCharCode(b)).join("");

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

export async function sha256Hex(bytes) { return toHex(await sha256(bytes)); }

const STANDARD_B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const URLSAFE_B64 = /^[A-Za-z0-9_-]*={0,2}$/;

// Strict, as dsse._b64decode: one alphabet, correct padding, and canonical (re-encodes the same).
function b64decode(text, label) {
  let standard;
  if (STANDARD_B64.test(text)) standard = text;
  else if (URLSAFE_B64.test(text)) standard = text.replaceAll("-", "+").replaceAll("_", "/");
  else throw new EnvelopeError(`${label} is not base64: ${b64Fault(text)}`);
  if (standard.length % 4 !== 0) throw new EnvelopeError(`${label} is not base64: Incorrect padding`);
  let raw;
  try { raw = atob(standard); } catch { throw new EnvelopeError(`${label} is not base64: Incorrect padding`); }
  if (btoa(raw) !== standard) {
    throw new EnvelopeError(`${label} is not canonical base64 (non-zero bits in the last character)`);
  }
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function b64Fault(text) {
  for (let i = 0; i < text.length; i++) {
    if (!/[A-Za-z0-9+/=_-]/.test(text[i])) return `character ${JSON.stringify(text[i])} at offset ${i} is in neither base64 alphabet`;
  }
  if (/[+/]/.test(text) && /[-_]/.test(text)) return "mixes the standard (+/) and URL-safe (-_) alphabets";
  return "'=' padding must come last, at most two of it";
}

function b64url(bytes) { return btoa(binary(bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, ""); }

function b64urlDecode(text, label) {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new JwkError(`${label} is not base64url`);
  const standard = text.replaceAll("-", "+").replaceAll("_", "/");
  let raw;
  try { raw = atob(standard + "=".repeat((4 - (standard.length % 4)) % 4)); } catch {
    throw new JwkError(`${label} is not base64url`);
  }
  const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
  if (b64url(bytes) !== text) throw new JwkError(`${label} is not canonical base64url`);
  return bytes;
}

// -- JWK (RFC 8037) and key ids (RFC 7638 thumbprints) --------------------------------------------

async function thumbprint(x) {
  return b64url(await sha256(utf8.encode(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`)));
}

export async function fromJwk(data) {
  if (typeof data !== "object" || data === null || Array.isArray(data)) throw new JwkError("a JWK must be a JSON object");
  if ("d" in data) throw new JwkError('the JWK has a private part ("d"): refused, and that private key must be treated as leaked');
  if (data.kty !== "OKP") throw new JwkError(`kty must be 'OKP', not ${JSON.stringify(data.kty)}`);
  if (data.crv !== "Ed25519") throw new JwkError(`crv must be 'Ed25519', not ${JSON.stringify(data.crv)}`);
  if (typeof data.x !== "string") throw new JwkError("the JWK has no x (the public key)");
  const raw = b64urlDecode(data.x, "x");
  if (raw.length !== 32) throw new JwkError(`x must encode 32 bytes, not ${raw.length}`);
  const kid = await thumbprint(data.x);
  if ("kid" in data && data.kid !== kid) throw new JwkError(`kid ${JSON.stringify(data.kid)} is not the key's RFC 7638 thumbprint ${kid}`);
  if ("alg" in data && !["EdDSA", "Ed25519"].includes(data.alg)) throw new JwkError(`alg must be EdDSA or Ed25519, not ${JSON.stringify(data.alg)}`);
  if ("use" in data && data.use !== "sig") throw new JwkError(`use must be 'sig', not ${JSON.stringify(data.use)}`);
  let key;
  try {
    key = await crypto.subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x: data.x }, { name: "Ed25519" }, false, ["verify"]);
  } catch (exc) {
    throw new JwkError(`x is not a usable Ed25519 public key: ${exc.message}`);
  }
  return { kid, key };
}

// A JWK set (GET /v1/keys) as a Map of key id -> CryptoKey; throws naming the bad entry.
export async function importKeySet(data) {
  if (typeof data !== "object" || data === null || !Array.isArray(data.keys)) throw new JwkError("not a JWK set");
  const found = new Map();
  for (const [position, entry] of data.keys.entries()) {
    let imported;
    try { imported = await fromJwk(entry); } catch (exc) { throw new JwkError(`keys[${position}]: ${exc.message}`); }
    if (found.has(imported.kid)) throw new JwkError(`keys[${position}]: key ${imported.kid} appears twice`);
    found.set(imported.kid, imported.key);
  }
  return found;
}

// -- DSSE ----------------------------------------------------------------------------------------

function jsonType(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return { object: "an object", string: "a string", boolean: "a boolean", number: "a number" }[typeof value] || typeof value;
}

function member(data, name, where) {
  if (!Object.hasOwn(data, name)) throw new EnvelopeError(`${where} has no '${name}' member`);
  return data[name];
}

function text(data, name, where, allowEmpty = false) {
  const value = member(data, name, where);
  const label = where === "envelope" ? name : `${where}.${name}`;
  if (typeof value !== "string") throw new EnvelopeError(`${label} must be a string, not ${jsonType(value)}`);
  if (!value && !allowEmpty) throw new EnvelopeError(`${label} is empty`);
  if (!value.isWellFormed()) throw new EnvelopeError(`${label} is not valid Unicode (lone surrogate)`);
  return value;
}

function parseEnvelope(data) {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new EnvelopeError(`envelope must be a JSON object, not ${jsonType(data)}`);
  }
  const payloadType = text(data, "payloadType", "envelope");
  const payload = b64decode(text(data, "payload", "envelope", true), "payload");
  const raw = member(data, "signatures", "envelope");
  if (!Array.isArray(raw)) throw new EnvelopeError(`signatures must be an array, not ${jsonType(raw)}`);
  if (!raw.length) throw new EnvelopeError("signatures is empty: an envelope needs at least one signature");
  const signatures = [];
  const seen = new Set();
  raw.forEach((entry, position) => {
    const where = `signatures[${position}]`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new EnvelopeError(`${where} must be a JSON object, not ${jsonType(entry)}`);
    }
    const keyid = text(entry, "keyid", where);
    if (seen.has(keyid)) throw new EnvelopeError(`${where}: duplicate keyid ${JSON.stringify(keyid)}`);
    seen.add(keyid);
    signatures.push({ keyid, sig: b64decode(text(entry, "sig", where), `${where}.sig`) });
  });
  return { payloadType, payload, signatures };
}

// DSSE v1 Pre-Authentication Encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.
export function pae(payloadType, payload) {
  const type = utf8.encode(payloadType);
  return concat(utf8.encode(`DSSEv1 ${type.length} `), type, utf8.encode(` ${payload.length} `), payload);
}

async function signatureHolds(envelope, signature, key) {
  if (signature.sig.length !== 64) return false;
  try {
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature.sig, pae(envelope.payloadType, envelope.payload));
  } catch {
    return false;
  }
}

// -- RFC 8785 (JCS) ------------------------------------------------------------------------------

class CanonicalizationError extends Error {}

// ECMAScript's own JSON.stringify is JCS's serialisation of strings and numbers; keys sort by
// UTF-16 code units, which is what Array.prototype.sort does with strings.
export function canonicalJson(value) {
  if (value === null || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new CanonicalizationError("a number that is not finite");
    return JSON.stringify(value);
  }
  if (typeof value === "string") {
    if (!value.isWellFormed()) throw new CanonicalizationError("a string with a lone surrogate");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${canonicalJson(k)}:${canonicalJson(value[k])}`).join(",")}}`;
}

function canonicalPayload(payload, report, prefix) {
  let statement;
  try {
    statement = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(payload));
  } catch (exc) {
    report.fail(`${prefix}_not_json`, `the payload is not JSON: ${exc.message}`);
    return null;
  }
  let canonical;
  try {
    canonical = utf8.encode(canonicalJson(statement));
  } catch (exc) {
    report.fail(`${prefix}_not_canonical`, `the payload cannot be RFC 8785 JSON: ${exc.message}`);
    return null;
  }
  if (!equal(canonical, payload)) {
    report.fail(`${prefix}_not_canonical`, "the payload is not in RFC 8785 canonical form");
    return null;
  }
  if (typeof statement !== "object" || statement === null || Array.isArray(statement)) {
    report.fail(`${prefix}_invalid`, "the payload is not a JSON object");
    return null;
  }
  return statement;
}

// -- statements ----------------------------------------------------------------------------------

const TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{1,6})Z$/;

// An RFC 3339 time as the statement spells it (UTC, microseconds) in microseconds since 1970; null if not one.
function micros(value) {
  const m = typeof value === "string" ? TIME.exec(value) : null;
  if (!m) return null;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const back = new Date(ms);
  if (back.getUTCFullYear() !== year || back.getUTCMonth() !== month - 1 || back.getUTCDate() !== day
      || hour > 23 || minute > 59 || second > 59) return null;
  return BigInt(ms) * 1000n + BigInt(m[7].padEnd(6, "0"));
}

function isKind(kind, value) {
  switch (kind) {
    case "null": return value === null;
    case "int": return Number.isInteger(value);
    case "str": return typeof value === "string";
    case "object": return typeof value === "object" && value !== null && !Array.isArray(value);
    case "time": return micros(value) !== null;
    default: throw new Error(kind);
  }
}

function statementProblems(statement) {
  const problems = Object.keys(FIELDS).filter((n) => !Object.hasOwn(statement, n)).map((n) => `missing field ${n}`);
  problems.push(...Object.keys(statement).filter((n) => !Object.hasOwn(FIELDS, n)).map((n) => `unknown field ${n}`));
  for (const [name, kinds] of Object.entries(FIELDS)) {
    if (Object.hasOwn(statement, name) && !kinds.some((k) => isKind(k, statement[name]))) {
      problems.push(`${name} must be ${kinds.join(" or ")}`);
    }
  }
  if (Object.hasOwn(statement, "receipt_version") && statement.receipt_version !== 1) {
    problems.push(`unsupported receipt_version ${statement.receipt_version}`);
  }
  const usage = statement.usage;
  if (isKind("object", usage)) {
    for (const name of USAGE_FIELDS) {
      if (!(usage[name] === undefined || usage[name] === null || isKind("int", usage[name]))) {
        problems.push(`usage.${name} must be int or null`);
      }
    }
  }
  return problems;
}

const isDigest = (value) => typeof value === "string" && /^[0-9a-f]{64}$/.test(value);

// -- RFC 9162 Merkle tree ------------------------------------------------------------------------

export const leafHash = (data) => sha256(concat(Uint8Array.of(0), data));
const nodeHash = (left, right) => sha256(concat(Uint8Array.of(1), left, right));

// RFC 9162 §2.1.3.2, as merkle.verify_inclusion.
export async function verifyInclusion(leaf, index, size, proof, root) {
  if (!(index >= 0 && index < size)) return false;
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      while (fn !== 0n && (fn & 1n) === 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equal(r, root);
}

// -- the checks ----------------------------------------------------------------------------------

function checkEnvelope(data, report) {
  let envelope;
  try {
    envelope = parseEnvelope(data);
  } catch (exc) {
    if (!(exc instanceof EnvelopeError)) throw exc;
    report.fail("envelope_malformed", `not a DSSE envelope: ${exc.message}`);
    return [null, null];
  }
  if (envelope.payloadType !== RECEIPT_PAYLOAD_TYPE) {
    report.fail("payload_type_mismatch", `payloadType is ${JSON.stringify(envelope.payloadType)}, not ${JSON.stringify(RECEIPT_PAYLOAD_TYPE)}`);
    return [envelope, null];
  }
  const statement = canonicalPayload(envelope.payload, report, "payload");
  if (statement === null) return [envelope, null];
  const problems = statementProblems(statement);
  if (problems.length) {
    report.fail("payload_invalid", `the receipt statement is not well formed: ${problems.join("; ")}`);
    return [envelope, null];
  }
  return [envelope, statement];
}

async function witnessKeys(witnesses) {
  const found = new Map();
  for (const witness of Array.isArray(witnesses) ? witnesses : []) {
    if (typeof witness !== "object" || witness === null || typeof witness.keyid !== "string") continue;
    try {
      found.set(witness.keyid, (await fromJwk(witness.public_key)).key);
    } catch (exc) {
      if (!(exc instanceof JwkError)) throw exc;
    }
  }
  return found;
}

const known = (keys) => [...keys.keys()].sort().join(", ") || "none";

async function checkSignatures(envelope, statement, witnesses, keys, report) {
  const declared = await witnessKeys(witnesses);
  const named = statement.key_id;
  for (const signature of envelope.signatures) {
    const signer = signature.keyid === named ? "executor" : "witness";
    let key = keys.get(signature.keyid);
    let trusted = true;
    if (key === undefined) { key = declared.get(signature.keyid); trusted = false; }
    const holds = key !== undefined ? await signatureHolds(envelope, signature, key) : null;
    const detail = key !== undefined ? "" : "no public key for this key id (trusted or in the bundle)";
    report.signatures.push({ keyid: signature.keyid, signer, trusted, holds, detail });
    if (holds === false) {
      report.fail(trusted ? "signature_invalid" : "witness_signature_invalid",
        `the signature of ${signature.keyid} (${signer}) does not hold over this payload`);
    }
  }
  const mine = report.signatures.filter((check) => check.signer === "executor");
  if (!mine.length) {
    report.fail("signature_missing", `no signature by the key the receipt names (${named})`);
  } else if (!mine[0].trusted) {
    report.fail("unknown_key", `the receipt is signed by ${named}, which is not among the trusted keys (${known(keys)})`);
  }
}

async function checkContent(statement, inputBytes, outputBytes, report) {
  for (const [name, given] of [["input", inputBytes], ["output", outputBytes]]) {
    if (given === undefined || given === null) continue;
    const expected = statement[`${name}_sha256`];
    const actual = await sha256Hex(given);
    if (expected === null) {
      report.fail(`${name}_hash_mismatch`, `the receipt records no ${name} (the task never ran), but ${given.length} bytes were given`);
    } else if (actual !== expected) {
      report.fail(`${name}_hash_mismatch`, `the ${name} given (${given.length} bytes, sha256 ${actual}) is not the one the `
        + `receipt records (${statement[`${name}_bytes`]} bytes, sha256 ${expected})`);
    }
  }
}

// A signed tree head's statement when its envelope, payload and signature hold; else null.
export async function checkHead(data, keys, report, prefix = "head") {
  let envelope;
  try {
    envelope = parseEnvelope(data);
  } catch (exc) {
    if (!(exc instanceof EnvelopeError)) throw exc;
    report.fail(`${prefix}_malformed`, `the tree head is not a DSSE envelope: ${exc.message}`);
    return null;
  }
  if (envelope.payloadType !== TREE_HEAD_PAYLOAD_TYPE) {
    report.fail(`${prefix}_payload_type_mismatch`, `payloadType is ${JSON.stringify(envelope.payloadType)}, not ${JSON.stringify(TREE_HEAD_PAYLOAD_TYPE)}`);
    return null;
  }
  const statement = canonicalPayload(envelope.payload, report, prefix);
  if (statement === null) return null;
  const wrong = Object.entries(HEAD_FIELDS).filter(([name, kind]) => !isKind(kind, statement[name]))
    .map(([name, kind]) => `${name} must be ${kind === "str" ? "str" : "int"}`);
  const names = Object.keys(statement).sort();
  const sameFields = names.join() === Object.keys(HEAD_FIELDS).sort().join();
  if (wrong.length || !sameFields || micros(statement.timestamp) === null || !isDigest(statement.root_hash)) {
    report.fail(`${prefix}_invalid`, "the tree head statement is not well formed: "
      + (wrong.join("; ") || `fields ${names.join(", ")}, a timestamp and a hex root_hash expected`));
    return null;
  }
  const signature = envelope.signatures.find((s) => s.keyid === statement.key_id);
  const key = keys.get(statement.key_id);
  if (signature === undefined) {
    report.fail(`${prefix}_signature_missing`, `no signature by the key the head names (${statement.key_id})`);
  } else if (key === undefined) {
    report.fail(`${prefix}_unknown_key`, `the head is signed by ${statement.key_id}, which is not among the trusted keys (${known(keys)})`);
  } else if (!(await signatureHolds(envelope, signature, key))) {
    report.fail(`${prefix}_signature_invalid`, `the signature of ${signature.keyid} over the tree head does not hold`);
  } else {
    return statement;
  }
  return null;
}

function parseProof(proof) {
  if (typeof proof !== "object" || proof === null) return null;
  const { log_index: index, tree_size: size, hashes } = proof;
  if (!(Number.isInteger(index) && Number.isInteger(size) && Array.isArray(hashes) && hashes.every(isDigest))) return null;
  return [index, size, hashes.map(fromHex)];
}

async function checkInclusion(proof, payload, statement, head, report) {
  const parsed = parseProof(proof);
  if (parsed === null) {
    report.fail("inclusion_proof_malformed", "inclusion_proof is {log_index, tree_size, hashes: [hex, …]}");
    return;
  }
  const [index, size, hashes] = parsed;
  if (statement.log_id !== head.log_id) {
    report.fail("log_mismatch", `the receipt is of log ${statement.log_id}, the head of log ${head.log_id}`);
  }
  if (index !== statement.log_index) {
    report.fail("inclusion_index_mismatch", `the proof is for leaf ${index}, the receipt says ${statement.log_index}`);
  }
  if (size !== head.tree_size) {
    report.fail("inclusion_size_mismatch", `the proof is for tree size ${size}, the head has ${head.tree_size}`);
  } else if (!(await verifyInclusion(await leafHash(payload), index, size, hashes, fromHex(head.root_hash)))) {
    report.fail("inclusion_proof_invalid", `the receipt is not leaf ${index} of the tree of size ${size} whose root the head signs`);
  }
  if (micros(statement.issued_at) > micros(head.timestamp)) {
    report.fail("receipt_after_head", `issued at ${statement.issued_at}, after the head that holds it (${head.timestamp})`);
  }
}

async function checkAgainstTrustedHead(data, statement, head, keys, report) {
  const trusted = await checkHead(data, keys, report, "trusted_head");
  if (trusted === null) return;
  if (trusted.log_id !== statement.log_id) {
    report.fail("log_mismatch", `the given head is of log ${trusted.log_id}, the receipt of ${statement.log_id}`);
  } else if (trusted.tree_size <= statement.log_index) {
    if (micros(statement.issued_at) < micros(trusted.timestamp)) {
      report.fail("backdated", `leaf ${statement.log_index} was appended after the head of size ${trusted.tree_size} `
        + `signed at ${trusted.timestamp}, yet claims ${statement.issued_at}`);
    }
  } else if (head !== null && trusted.tree_size === head.tree_size) {
    if (trusted.root_hash !== head.root_hash) {
      report.fail("head_mismatch", `the given head and the bundle's head both have size ${head.tree_size} but different `
        + "roots: the log shows different trees to different parties");
    }
  } else if (head !== null) {
    report.fail("inclusion_not_for_trusted_head", `the bundle proves inclusion in the tree of size ${head.tree_size}, not `
      + `in the given head's ${trusted.tree_size}: fetch the receipt with ?tree_size=${trusted.tree_size}`);
  }
}

// What an envelope's payload claims, read WITHOUT trusting it: only to choose what to fetch
// (a proof against this head's size, the bodies the receipt hashed). null when unreadable.
export function claimedStatement(envelope) {
  try {
    const statement = JSON.parse(new TextDecoder().decode(parseEnvelope(envelope).payload));
    return typeof statement === "object" && statement !== null ? statement : null;
  } catch {
    return null;
  }
}

// Every check of a receipt bundle against the trusted `keys` (Map kid -> CryptoKey), as verify.verify_bundle.
export async function verifyBundle(bundle, keys, { inputBytes, outputBytes, trustedHead } = {}) {
  const report = new Report();
  if (typeof bundle !== "object" || bundle === null || !["envelope", "inclusion_proof", "tree_head"].every((k) => k in bundle)) {
    report.fail("bundle_malformed", "a receipt bundle is an object with envelope, inclusion_proof and tree_head");
    return report;
  }
  const [envelope, statement] = checkEnvelope(bundle.envelope, report);
  if (envelope === null || statement === null) return report;
  report.statement = statement;
  await checkSignatures(envelope, statement, bundle.witnesses || [], keys, report);
  await checkContent(statement, inputBytes, outputBytes, report);
  const head = await checkHead(bundle.tree_head, keys, report);
  if (head !== null) {
    report.head = head;
    await checkInclusion(bundle.inclusion_proof, envelope.payload, statement, head, report);
  }
  if (trustedHead !== undefined && trustedHead !== null) {
    await checkAgainstTrustedHead(trustedHead, statement, head, keys, report);
  }
  return report;
}
