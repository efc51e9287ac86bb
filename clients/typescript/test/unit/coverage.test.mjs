// The SDK against the document: a method per operation, a class per problem slug, the key flags.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { CONSOLE_ASSETS, Executor, METHOD_FOR_OPERATION, OPERATIONS, PROBLEM_CLASSES, PROBLEM_STATUSES, ApiError } from "../../dist/index.js";

const doc = JSON.parse(readFileSync(new URL("../../../openapi.json", import.meta.url), "utf8"));
const METHODS = ["get", "put", "post", "delete", "patch"];
const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
  METHODS.filter((m) => item[m]).map((m) => ({ path, method: m.toUpperCase(), op: item[m] })));

test("every operationId of openapi.json has a method on Executor", () => {
  const missing = operations.map(({ op }) => op.operationId)
    .filter((id) => typeof Executor.prototype[METHOD_FOR_OPERATION[id]] !== "function");
  assert.deepEqual(missing, [], `operations without a method: ${missing.join(", ")}`);
  assert.deepEqual(Object.keys(METHOD_FOR_OPERATION).sort(), operations.map(({ op }) => op.operationId).sort(),
    "the map names exactly the document's operations");
  // One method per operation, except the console's assets: one consoleAsset(name) for the three.
  const assets = Object.values(CONSOLE_ASSETS);
  assert.deepEqual(assets.map((id) => METHOD_FOR_OPERATION[id]), assets.map(() => "consoleAsset"));
  assert.equal(new Set(Object.values(METHOD_FOR_OPERATION)).size, operations.length - assets.length + 1,
    "one method per operation");
});

test("the generated operation table matches the document", () => {
  for (const { path, method, op } of operations) {
    const row = OPERATIONS[op.operationId];
    assert.equal(row.method, method, op.operationId);
    assert.equal(row.path, path, op.operationId);
    const keyed = (op.parameters ?? []).some((p) => p.in === "header" && p.name === "Idempotency-Key");
    assert.equal(row.idempotencyKey, keyed, `${op.operationId} Idempotency-Key`);
  }
});

test("every problem slug has its own ApiError subclass, named after it", () => {
  const slugs = new Set(operations.flatMap(({ op }) => Object.values(op.responses).flatMap((r) => r["x-problem-types"] ?? [])));
  assert.deepEqual([...slugs].sort(), Object.keys(PROBLEM_STATUSES).sort());
  for (const slug of slugs) {
    const Class = PROBLEM_CLASSES[slug];
    assert.ok(Class && Class.prototype instanceof ApiError, slug);
    const expected = slug.split("_").map((w) => w[0].toUpperCase() + w.slice(1)).join("") + "Error";
    assert.equal(Class.name, expected);
  }
});
