// The offline verifier agrees with the service's (fixtures made by executor/receipts: fixtures/make_receipts.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { egressDigest } from "../../dist/receipts/verify.js";
import { verifyReceipt, parseKeySet, keyId, pae, JwkError, leafHash, nodeHash, verifyInclusion } from "../../dist/index.js";

const fixtures = JSON.parse(readFileSync(new URL("../fixtures/receipts.json", import.meta.url), "utf8"));
const bytes = (b64) => (b64 === null ? undefined : new Uint8Array(Buffer.from(b64, "base64")));

for (const [name, fixture] of Object.entries(fixtures.cases)) {
  test(`receipt case ${name}: ${fixture.reasons.join(", ") || "valid"}`, () => {
    const result = verifyReceipt(fixture.bundle, fixtures.keys, {
      input: bytes(fixture.input), output: bytes(fixture.output), trustedHead: fixture.trusted_head ?? undefined,
      egress: fixture.egress ?? undefined,
    });
    assert.deepEqual(result.failures.map((f) => f.reason), fixture.reasons, JSON.stringify(result.failures));
    assert.equal(result.valid, fixture.reasons.length === 0);
    for (const failure of result.failures) assert.ok(failure.detail.length > 0);
  });
}

test("a valid bundle gives its statement, head and every signature", () => {
  const result = verifyReceipt(fixtures.cases.valid.bundle, fixtures.keys);
  assert.equal(result.statement.log_index, 2);
  assert.equal(result.head.tree_size, 7);
  assert.deepEqual(result.signatures.map((s) => [s.signer, s.trusted, s.holds]), [["executor", true, true], ["witness", false, true]]);
});

test("keys: a JWK set, an array, a single JWK or a Map", () => {
  const [jwk] = fixtures.keys.keys;
  const fromSet = parseKeySet(fixtures.keys);
  assert.deepEqual([...fromSet.keys()], [jwk.kid]);
  assert.equal(keyId(fromSet.get(jwk.kid)), jwk.kid);
  assert.equal(verifyReceipt(fixtures.cases.valid.bundle, [jwk]).valid, true);
  assert.equal(verifyReceipt(fixtures.cases.valid.bundle, jwk).valid, true);
  assert.equal(verifyReceipt(fixtures.cases.valid.bundle, fromSet).valid, true);
});

test("bad keys are refused loudly", () => {
  const [jwk] = fixtures.keys.keys;
  assert.throws(() => parseKeySet({ keys: [] }), JwkError);
  assert.throws(() => parseKeySet({ ...jwk, kid: "not-the-thumbprint" }), /thumbprint/);
  assert.throws(() => parseKeySet({ ...jwk, d: "secret" }), /private/);
  assert.throws(() => parseKeySet({ kty: "OKP", crv: "Ed25519", x: Buffer.alloc(32).toString("base64url") }), /valid Ed25519/);
  assert.throws(() => parseKeySet({ kty: "EC", crv: "P-256", x: jwk.x }), /kty/);
});

test("PAE and RFC 9162 hashing", () => {
  assert.equal(Buffer.from(pae("t", Buffer.from("ab"))).toString(), "DSSEv1 1 t 2 ab");
  const a = leafHash(Buffer.from("a"));
  const b = leafHash(Buffer.from("b"));
  const root = nodeHash(a, b);
  assert.ok(verifyInclusion(a, 0, 2, [b], root));
  assert.ok(verifyInclusion(b, 1, 2, [a], root));
  assert.ok(!verifyInclusion(a, 1, 2, [b], root));
  assert.ok(verifyInclusion(a, 0, 1, [], a));
  assert.ok(!verifyInclusion(a, 0, 2, [], root));
});

test("a bundle that is not one is reported, not thrown", () => {
  for (const junk of [null, 1, "x", [], {}, { envelope: 1, inclusion_proof: 1, tree_head: 1 }]) {
    const result = verifyReceipt(junk, fixtures.keys);
    assert.equal(result.valid, false);
  }
});

test("egress: the receipt binds the list's RFC 8785 SHA-256 and totals", () => {
  const { bundle, egress } = fixtures.cases.egress_valid;
  const result = verifyReceipt(bundle, fixtures.keys, { egress });
  assert.equal(result.valid, true, JSON.stringify(result.failures));
  assert.deepEqual(result.statement.egress, egressDigest(egress));
  assert.deepEqual(Object.keys(result.statement.egress).sort(), ["bytes_in", "bytes_out", "requests", "sha256"]);
  assert.equal(result.statement.egress.requests, egress.length);
  assert.equal("egress" in fixtures.cases.valid_without_bytes.bundle, false);
  assert.equal(verifyReceipt(fixtures.cases.valid.bundle, fixtures.keys).statement.egress, undefined);
  // Key order within an entry does not matter; list order does.
  const reordered = egress.map((entry) => Object.fromEntries(Object.entries(entry).reverse()));
  assert.equal(verifyReceipt(bundle, fixtures.keys, { egress: reordered }).valid, true);
  const reversed = [...egress].reverse();
  assert.deepEqual(verifyReceipt(bundle, fixtures.keys, { egress: reversed }).failures.map((f) => f.reason), ["egress_mismatch"]);
  assert.throws(() => egressDigest([{ bytes_out: 1.5, bytes_in: 0 }]), /RFC 8785/);
  assert.deepEqual(egressDigest([]), {
    sha256: "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945", requests: 0, bytes_out: 0, bytes_in: 0,
  });
});
