/**
 * Offline verification of a receipt bundle (`GET /v1/executions/{id}/receipt`): only the bundle,
 * the public keys you trust (`GET /v1/keys`, kept), and what you bring (the input and output
 * bytes, a tree head kept from earlier, the execution's egress list). A port of the service's
 * executor/receipts/verify.py: the same checks in the same order, each failure with the same
 * stable `reason` (docs/receipts.md lists them).
 */
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import type { components } from "../generated/schema.js";
import { parseEnvelope, signatureHolds, EnvelopeError, isObject, RECEIPT_PAYLOAD_TYPE, TREE_HEAD_PAYLOAD_TYPE,
  type Envelope } from "./dsse.js";
import { fromJwk, parseKeySet, type KeyRing } from "./jwk.js";
import { leafHash, verifyInclusion } from "./merkle.js";

export type ReceiptBundle = components["schemas"]["ReceiptBundle"];
export type KeySet = components["schemas"]["KeySet"];
export type SignedLogHead = components["schemas"]["SignedLogHead"];

/** What a receipt binds of an execution's egress: the SHA-256 of its recorded list's RFC 8785 form, and totals. */
export interface EgressDigest {
  sha256: string;
  requests: number;
  bytes_out: number;
  bytes_in: number;
}

/** The signed statement of a receipt (version 1). */
export interface ReceiptStatement {
  receipt_version: 1;
  log_id: string;
  log_index: number;
  key_id: string;
  issued_at: string;
  execution_id: string;
  owner: string;
  agent_id: string;
  agent_version: number;
  agent_kind: string;
  image_digest: string | null;
  module_sha256: string | null;
  oci_runtime: string | null;
  input_sha256: string;
  input_bytes: number;
  output_sha256: string | null;
  output_bytes: number | null;
  status: string;
  error_type: string | null;
  exit_code: number | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  usage: { wall_ms: number | null; cpu_ms: number | null; peak_memory_bytes: number | null; fuel_consumed: number | null };
  cost: { currency: string; decimals: number; amount: number; capped: boolean } | null;
  /** Only when the execution's agent declared egress (absent otherwise). */
  egress?: EgressDigest;
}

export interface TreeHead {
  log_id: string;
  tree_size: number;
  root_hash: string;
  timestamp: string;
  key_id: string;
}

export interface Failure {
  reason: string;
  detail: string;
}

export interface SignatureCheck {
  keyid: string;
  /** "executor" (the key the receipt names) or "witness". */
  signer: "executor" | "witness";
  /** The key is one you trust, not only one the bundle declares. */
  trusted: boolean;
  /** null: no public key for this signature anywhere. */
  holds: boolean | null;
  detail: string;
}

export interface VerifyResult {
  valid: boolean;
  failures: Failure[];
  signatures: SignatureCheck[];
  /** The receipt's statement, once its envelope and payload were read (whether or not it verified). */
  statement: ReceiptStatement | null;
  /** The bundle's tree head statement, when its signature holds. */
  head: TreeHead | null;
}

export interface VerifyOptions {
  /** The exact stdin bytes (`GET /v1/executions/{id}/input`): their SHA-256 must be the receipt's. */
  input?: Uint8Array | undefined;
  /** The exact stdout bytes (`GET /v1/executions/{id}/stdout`). */
  output?: Uint8Array | undefined;
  /** A signed tree head (`GET /v1/log/head`) kept from earlier: the bundle's log must agree with it. */
  trustedHead?: unknown;
  /** Key ids you know were retired, with when: a signature by one fails `key_retired` rather than `unknown_key`. */
  retired?: Readonly<Record<string, string>>;
  /**
   * The execution's egress list as recorded (`data` of `GET /v1/executions/{id}/egress`): its RFC 8785
   * SHA-256 and totals must be the receipt's `egress` (`egress_mismatch` otherwise).
   */
  egress?: unknown;
}

/** Anything `parseKeySet` reads: a JWK set, an array of JWKs, one JWK, or a Map kid → public key. */
export type TrustedKeys = KeySet | readonly unknown[] | KeyRing | Record<string, unknown>;

const HEAD_FIELDS: Record<keyof TreeHead, "str" | "int"> = {
  log_id: "str", tree_size: "int", root_hash: "str", timestamp: "str", key_id: "str",
};

type Kind = "int" | "str" | "time" | "object" | "null";
const STATEMENT_FIELDS: Record<Exclude<keyof ReceiptStatement, "egress">, Kind[]> = {
  receipt_version: ["int"],
  log_id: ["str"],
  log_index: ["int"],
  key_id: ["str"],
  issued_at: ["time"],
  execution_id: ["str"],
  owner: ["str"],
  agent_id: ["str"],
  agent_version: ["int"],
  agent_kind: ["str"],
  image_digest: ["str", "null"],
  module_sha256: ["str", "null"],
  oci_runtime: ["str", "null"],
  input_sha256: ["str"],
  input_bytes: ["int"],
  output_sha256: ["str", "null"],
  output_bytes: ["int", "null"],
  status: ["str"],
  error_type: ["str", "null"],
  exit_code: ["int", "null"],
  created_at: ["time"],
  started_at: ["time", "null"],
  finished_at: ["time", "null"],
  usage: ["object"],
  cost: ["object", "null"],
};
/** Present only when they apply: `egress` when the execution's agent declared egress. */
const OPTIONAL_FIELDS: Record<"egress", Kind[]> = { egress: ["object"] };
const USAGE_FIELDS = ["wall_ms", "cpu_ms", "peak_memory_bytes", "fuel_consumed"];
const EGRESS_FIELDS = ["sha256", "requests", "bytes_out", "bytes_in"] as const;

class Report {
  failures: Failure[] = [];
  signatures: SignatureCheck[] = [];
  statement: ReceiptStatement | null = null;
  head: TreeHead | null = null;

  fail(reason: string, detail: string): void {
    this.failures.push({ reason, detail });
  }

  result(): VerifyResult {
    return { valid: this.failures.length === 0, failures: this.failures, signatures: this.signatures,
      statement: this.statement, head: this.head };
  }
}

/**
 * Every check of a receipt bundle against the keys you trust. Never throws for a bad bundle (each
 * fault is a failure); throws JwkError when `keys` itself is not a usable key set.
 */
export function verifyReceipt(bundle: unknown, keys: TrustedKeys, options: VerifyOptions = {}): VerifyResult {
  const ring = parseKeySet(keys);
  const retired = options.retired ?? {};
  const report = new Report();
  if (!isObject(bundle) || !["envelope", "inclusion_proof", "tree_head"].every((name) => name in bundle)) {
    report.fail("bundle_malformed", "a receipt bundle is an object with envelope, inclusion_proof and tree_head");
    return report.result();
  }
  const [envelope, statement] = checkEnvelope(bundle.envelope, report);
  if (envelope === null || statement === null) return report.result();
  report.statement = statement;
  checkSignatures(envelope, statement, bundle.witnesses ?? [], ring, retired, report);
  checkContent(statement, options.input, options.output, report);
  if (options.egress !== undefined && options.egress !== null) checkEgress(statement, options.egress, report);
  const head = checkHead(bundle.tree_head, ring, report, "head", retired);
  if (head !== null) {
    report.head = head;
    checkInclusion(bundle.inclusion_proof, envelope.payload, statement, head, report);
  }
  if (options.trustedHead !== undefined && options.trustedHead !== null) {
    checkAgainstTrustedHead(options.trustedHead, statement, head, ring, retired, report);
  }
  return report.result();
}

/** A signed tree head's statement when its envelope, payload and signature hold; else null (failures added). */
function checkHead(data: unknown, keys: KeyRing, report: Report, prefix: string,
                   retired: Readonly<Record<string, string>>): TreeHead | null {
  let envelope: Envelope;
  try {
    envelope = parseEnvelope(data);
  } catch (error) {
    report.fail(`${prefix}_malformed`, `the tree head is not a DSSE envelope: ${(error as Error).message}`);
    return null;
  }
  if (envelope.payloadType !== TREE_HEAD_PAYLOAD_TYPE) {
    report.fail(`${prefix}_payload_type_mismatch`,
      `payloadType is ${JSON.stringify(envelope.payloadType)}, not ${JSON.stringify(TREE_HEAD_PAYLOAD_TYPE)}`);
    return null;
  }
  const statement = canonicalPayload(envelope.payload, report, prefix);
  if (statement === null) return null;
  const wrong = Object.entries(HEAD_FIELDS)
    .filter(([name, kind]) => !isKind(kind, statement[name]))
    .map(([name, kind]) => `${name} must be ${kind}`);
  const names = Object.keys(statement).sort();
  const exact = names.length === Object.keys(HEAD_FIELDS).length && names.every((name) => name in HEAD_FIELDS);
  if (wrong.length || !exact || !isTime(statement.timestamp) || !isDigest(statement.root_hash)) {
    report.fail(`${prefix}_invalid`, "the tree head statement is not well formed: "
      + (wrong.join("; ") || `fields ${JSON.stringify(names)}, a timestamp and a hex root_hash expected`));
    return null;
  }
  const head = statement as unknown as TreeHead;
  const signature = envelope.signatures.find((s) => s.keyid === head.key_id);
  const key = keys.get(head.key_id);
  if (signature === undefined) {
    report.fail(`${prefix}_signature_missing`, `no signature by the key the head names (${head.key_id})`);
  } else if (key === undefined) {
    const reason = head.key_id in retired ? "key_retired" : "unknown_key";
    report.fail(`${prefix}_${reason}`, `the head is signed by ${head.key_id}, which is not among the trusted keys `
      + `(${[...keys.keys()].sort().join(", ") || "none"})${retiredNote(head.key_id, retired)}`);
  } else if (!signatureHolds(envelope, signature, key)) {
    report.fail(`${prefix}_signature_invalid`, `the signature of ${signature.keyid} over the tree head does not hold`);
  } else {
    return head;
  }
  return null;
}

function checkEnvelope(data: unknown, report: Report): [Envelope | null, ReceiptStatement | null] {
  let envelope: Envelope;
  try {
    envelope = parseEnvelope(data);
  } catch (error) {
    report.fail("envelope_malformed", `not a DSSE envelope: ${(error as Error).message}`);
    return [null, null];
  }
  if (envelope.payloadType !== RECEIPT_PAYLOAD_TYPE) {
    report.fail("payload_type_mismatch",
      `payloadType is ${JSON.stringify(envelope.payloadType)}, not ${JSON.stringify(RECEIPT_PAYLOAD_TYPE)}`);
    return [envelope, null];
  }
  const statement = canonicalPayload(envelope.payload, report, "payload");
  if (statement === null) return [envelope, null];
  const problems = statementProblems(statement);
  if (problems.length) {
    report.fail("payload_invalid", `the receipt statement is not well formed: ${problems.join("; ")}`);
    return [envelope, null];
  }
  return [envelope, statement as unknown as ReceiptStatement];
}

/** The payload as a JSON object when its bytes are exactly its RFC 8785 form; else null (failure added). */
function canonicalPayload(payload: Uint8Array, report: Report, prefix: string): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch (error) {
    report.fail(`${prefix}_not_json`, `the payload is not JSON: ${(error as Error).message}`);
    return null;
  }
  const refused = notCanonicalizable(value, "");
  if (refused) {
    report.fail(`${prefix}_not_canonical`, `the payload cannot be RFC 8785 JSON: ${refused}`);
    return null;
  }
  const canonical = canonicalize(value);
  if (canonical === undefined || !Buffer.from(canonical, "utf8").equals(payload)) {
    report.fail(`${prefix}_not_canonical`, "the payload is not in RFC 8785 canonical form");
    return null;
  }
  if (!isObject(value)) {
    report.fail(`${prefix}_invalid`, "the payload is not a JSON object");
    return null;
  }
  return value;
}

/**
 * What the service's encoder refuses although RFC 8785 has a form for it: non-integers (nothing
 * signed is a float), integers beyond ±(2^53−1), lone surrogates. Undefined when the value is fine.
 */
function notCanonicalizable(value: unknown, pointer: string): string | undefined {
  const where = pointer ? `at '${pointer}'` : "at the top level";
  if (typeof value === "number") {
    if (!Number.isInteger(value)) return `${where}: float ${value} refused`;
    if (!Number.isSafeInteger(value)) return `${where}: integer ${value} is outside ±(2**53 - 1)`;
    return undefined;
  }
  if (typeof value === "string") return /\p{Cs}/u.test(value) ? `${where}: string has a lone surrogate` : undefined;
  if (Array.isArray(value)) {
    for (const [position, item] of value.entries()) {
      const found = notCanonicalizable(item, `${pointer}/${position}`);
      if (found) return found;
    }
    return undefined;
  }
  if (isObject(value)) {
    for (const [name, item] of Object.entries(value)) {
      if (/\p{Cs}/u.test(name)) return `${where}: key has a lone surrogate`;
      const found = notCanonicalizable(item, `${pointer}/${name.replace(/~/g, "~0").replace(/\//g, "~1")}`);
      if (found) return found;
    }
  }
  return undefined;
}

function statementProblems(statement: Record<string, unknown>): string[] {
  const problems: string[] = [];
  for (const name of Object.keys(STATEMENT_FIELDS)) if (!(name in statement)) problems.push(`missing field ${name}`);
  for (const name of Object.keys(statement)) {
    if (!(name in STATEMENT_FIELDS) && !(name in OPTIONAL_FIELDS)) problems.push(`unknown field ${name}`);
  }
  for (const [name, kinds] of Object.entries({ ...STATEMENT_FIELDS, ...OPTIONAL_FIELDS })) {
    if (name in statement && !kinds.some((kind) => isKind(kind, statement[name]))) {
      problems.push(`${name} must be ${kinds.join(" or ")}`);
    }
  }
  if (statement.receipt_version !== undefined && statement.receipt_version !== 1) {
    problems.push(`unsupported receipt_version ${JSON.stringify(statement.receipt_version)}`);
  }
  const usage = statement.usage;
  if (isObject(usage)) {
    for (const name of USAGE_FIELDS) {
      if (!(usage[name] === undefined || usage[name] === null || isKind("int", usage[name]))) {
        problems.push(`usage.${name} must be int or null`);
      }
    }
  }
  if (isObject(statement.egress)) problems.push(...egressFieldProblems(statement.egress));
  return problems;
}

function egressFieldProblems(egress: Record<string, unknown>): string[] {
  const names = Object.keys(egress);
  if (names.length !== EGRESS_FIELDS.length || !EGRESS_FIELDS.every((name) => names.includes(name))) {
    return [`egress must have exactly ${EGRESS_FIELDS.join(", ")}`];
  }
  const problems: string[] = [];
  if (!isDigest(egress.sha256)) problems.push("egress.sha256 must be a lower-case hex SHA-256");
  for (const name of EGRESS_FIELDS.slice(1)) {
    const value = egress[name];
    if (!(isKind("int", value) && (value as number) >= 0)) problems.push(`egress.${name} must be a non-negative int`);
  }
  return problems;
}

/**
 * What a receipt binds of an egress list (the service's executor/receipts/egress.py): the SHA-256 of its
 * RFC 8785 form, the number of requests, and the sums of `bytes_out` and `bytes_in`. Throws when the list
 * is not an array of objects with integer byte counts, or has no canonical form the service would sign.
 */
export function egressDigest(entries: readonly Record<string, unknown>[]): EgressDigest {
  const refused = notCanonicalizable(entries, "");
  if (refused) throw new TypeError(`the egress list cannot be RFC 8785 JSON: ${refused}`);
  const sum = (name: "bytes_out" | "bytes_in"): number => entries.reduce((total, entry) => {
    if (!isKind("int", entry[name])) throw new TypeError(`an entry has no integer ${name}`);
    return total + (entry[name] as number);
  }, 0);
  return { sha256: sha256Hex(Buffer.from(canonicalize(entries) ?? "", "utf8")), requests: entries.length,
    bytes_out: sum("bytes_out"), bytes_in: sum("bytes_in") };
}

/** Why `entries` is not the list the receipt's `egress` digest was made from; empty when it is. */
function egressProblems(digest: EgressDigest, entries: unknown): string[] {
  if (!Array.isArray(entries) || !entries.every(isObject)) return ["the egress given is not a JSON array of objects"];
  const bad: string[] = [];
  for (const [position, entry] of entries.entries()) {
    for (const name of ["bytes_out", "bytes_in"]) {
      if (!isKind("int", entry[name])) bad.push(`entry ${position} has no integer ${name}`);
    }
  }
  if (bad.length) return bad;
  const refused = notCanonicalizable(entries, "");
  if (refused) return [`the egress given cannot be RFC 8785 JSON: ${refused}`];
  const found = egressDigest(entries);
  const problems: string[] = [];
  if (found.sha256 !== digest.sha256) {
    problems.push(`the egress given (${found.requests} requests, sha256 ${found.sha256}) is not the list the receipt `
      + `records (${digest.requests} requests, sha256 ${digest.sha256})`);
  }
  const wrong = EGRESS_FIELDS.slice(1)
    .filter((name) => found[name] !== digest[name])
    .map((name) => `${name} ${found[name]} (the receipt says ${digest[name]})`);
  if (wrong.length) problems.push(`the egress given totals ${wrong.join(", ")}`);
  return problems;
}

function checkSignatures(envelope: Envelope, statement: ReceiptStatement, witnesses: unknown, keys: KeyRing,
                         retired: Readonly<Record<string, string>>, report: Report): void {
  const declared = witnessKeys(witnesses);
  const named = statement.key_id;
  for (const signature of envelope.signatures) {
    const signer = signature.keyid === named ? "executor" : "witness";
    let key = keys.get(signature.keyid);
    let trusted = true;
    if (key === undefined) {
      key = declared.get(signature.keyid);
      trusted = false;
    }
    const holds = key !== undefined ? signatureHolds(envelope, signature, key) : null;
    const detail = key !== undefined ? "" : "no public key for this key id (trusted or in the bundle)";
    report.signatures.push({ keyid: signature.keyid, signer, trusted, holds, detail });
    if (holds === false) { // a key the verifier trusts, or a witness key the bundle itself declares
      report.fail(trusted ? "signature_invalid" : "witness_signature_invalid",
        `the signature of ${signature.keyid} (${signer}) does not hold over this payload`);
    }
  }
  const mine = report.signatures.filter((check) => check.signer === "executor");
  if (mine.length === 0) {
    report.fail("signature_missing", `no signature by the key the receipt names (${named})`);
  } else if (!mine[0]!.trusted) {
    report.fail(named in retired ? "key_retired" : "unknown_key", `the receipt is signed by ${named}, which is not `
      + `among the trusted keys (${[...keys.keys()].sort().join(", ") || "none"})${retiredNote(named, retired)}`);
  }
}

function checkContent(statement: ReceiptStatement, input: Uint8Array | undefined, output: Uint8Array | undefined,
                      report: Report): void {
  for (const [name, given] of [["input", input], ["output", output]] as const) {
    if (given === undefined) continue;
    const expected = statement[`${name}_sha256`];
    const actual = sha256Hex(given);
    if (expected === null) {
      report.fail(`${name}_hash_mismatch`,
        `the receipt records no ${name} (the task never ran), but ${given.length} bytes were given`);
    } else if (actual !== expected) {
      report.fail(`${name}_hash_mismatch`, `the ${name} given (${given.length} bytes, sha256 ${actual}) is not the one `
        + `the receipt records (${statement[`${name}_bytes`]} bytes, sha256 ${expected})`);
    }
  }
}

function checkEgress(statement: ReceiptStatement, egress: unknown, report: Report): void {
  if (statement.egress === undefined) {
    const given = Array.isArray(egress) ? `a list of ${egress.length} requests` : "an egress list";
    report.fail("egress_mismatch", `the receipt records no egress (its agent declared none), but ${given} was given`);
    return;
  }
  const problems = egressProblems(statement.egress, egress);
  if (problems.length) report.fail("egress_mismatch", problems.join("; "));
}

function checkInclusion(proof: unknown, payload: Uint8Array, statement: ReceiptStatement, head: TreeHead,
                        report: Report): void {
  const parsed = parseProof(proof);
  if (parsed === null) {
    report.fail("inclusion_proof_malformed", "inclusion_proof is {log_index, tree_size, hashes: [hex, …]}");
    return;
  }
  const { index, size, hashes } = parsed;
  if (statement.log_id !== head.log_id) {
    report.fail("log_mismatch", `the receipt is of log ${statement.log_id}, the head of log ${head.log_id}`);
  }
  if (index !== statement.log_index) {
    report.fail("inclusion_index_mismatch", `the proof is for leaf ${index}, the receipt says ${statement.log_index}`);
  }
  if (size !== head.tree_size) {
    report.fail("inclusion_size_mismatch", `the proof is for tree size ${size}, the head has ${head.tree_size}`);
  } else if (!verifyInclusion(leafHash(payload), index, size, hashes, Buffer.from(head.root_hash, "hex"))) {
    report.fail("inclusion_proof_invalid",
      `the receipt is not leaf ${index} of the tree of size ${size} whose root the head signs`);
  }
  if (compareTimes(statement.issued_at, head.timestamp) > 0) {
    report.fail("receipt_after_head", `issued at ${statement.issued_at}, after the head that holds it (${head.timestamp})`);
  }
}

/** A head the verifier kept from earlier: the bundle's log must agree with it. */
function checkAgainstTrustedHead(data: unknown, statement: ReceiptStatement, head: TreeHead | null, keys: KeyRing,
                                 retired: Readonly<Record<string, string>>, report: Report): void {
  const trusted = checkHead(data, keys, report, "trusted_head", retired);
  if (trusted === null) return;
  if (trusted.log_id !== statement.log_id) {
    report.fail("log_mismatch", `the given head is of log ${trusted.log_id}, the receipt of ${statement.log_id}`);
  } else if (trusted.tree_size <= statement.log_index) {
    // The receipt was appended after that head was signed: it cannot be older than it.
    if (compareTimes(statement.issued_at, trusted.timestamp) < 0) {
      report.fail("backdated", `leaf ${statement.log_index} was appended after the head of size ${trusted.tree_size} `
        + `signed at ${trusted.timestamp}, yet claims ${statement.issued_at}`);
    }
  } else if (head !== null && trusted.tree_size === head.tree_size) {
    if (trusted.root_hash !== head.root_hash) {
      report.fail("head_mismatch", `the given head and the bundle's head both have size ${head.tree_size} `
        + "but different roots: the log shows different trees to different parties");
    }
  } else if (head !== null) {
    report.fail("inclusion_not_for_trusted_head", `the bundle proves inclusion in the tree of size ${head.tree_size}, `
      + `not in the given head's ${trusted.tree_size}: fetch the receipt with ?tree_size=${trusted.tree_size}`);
  }
}

function witnessKeys(witnesses: unknown): Map<string, Uint8Array> {
  const found = new Map<string, Uint8Array>();
  for (const witness of Array.isArray(witnesses) ? witnesses : []) {
    if (isObject(witness) && typeof witness.keyid === "string") {
      try {
        found.set(witness.keyid, fromJwk(witness.public_key));
      } catch {
        continue;
      }
    }
  }
  return found;
}

function parseProof(proof: unknown): { index: number; size: number; hashes: Uint8Array[] } | null {
  if (!isObject(proof)) return null;
  const { log_index: index, tree_size: size, hashes } = proof;
  if (!(isKind("int", index) && isKind("int", size) && Array.isArray(hashes) && hashes.every(isDigest))) return null;
  return { index: index as number, size: size as number, hashes: hashes.map((h: string) => Buffer.from(h, "hex")) };
}

function isKind(kind: Kind | "int" | "str", value: unknown): boolean {
  switch (kind) {
    case "null": return value === null;
    case "int": return typeof value === "number" && Number.isInteger(value);
    case "str": return typeof value === "string";
    case "object": return isObject(value);
    case "time": return isTime(value);
  }
}

function isDigest(value: unknown): value is string {
  return typeof value === "string" && /^[0-9a-f]{64}$/.test(value);
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{1,6})Z$/;

/** An instant as microseconds since the epoch, from the one spelling the service signs (UTC, `.ffffff`, `Z`). */
function parseTime(value: unknown): bigint | null {
  if (typeof value !== "string") return null;
  const match = RFC3339.exec(value);
  if (!match) return null;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  const back = new Date(ms);
  if (back.getUTCFullYear() !== year || back.getUTCMonth() !== month - 1 || back.getUTCDate() !== day
      || back.getUTCHours() !== hour || back.getUTCMinutes() !== minute || back.getUTCSeconds() !== second) return null;
  return BigInt(ms) * 1000n + BigInt(match[7]!.padEnd(6, "0"));
}

function isTime(value: unknown): boolean {
  return parseTime(value) !== null;
}

function compareTimes(a: string, b: string): number {
  const x = parseTime(a)!;
  const y = parseTime(b)!;
  return x < y ? -1 : x > y ? 1 : 0;
}

function retiredNote(kid: string, retired: Readonly<Record<string, string>>): string {
  return kid in retired ? `; it was retired at ${retired[kid]}` : "";
}

export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export { EnvelopeError };
