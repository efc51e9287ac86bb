// Problem documents become typed errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { apiErrorFor, isProblem, ApiError, ExecutorError, EntitlementUsedUpError, EntitlementError, InputInvalidError,
  RateLimitedError, NetworkError, TimeoutError, WaitTimeoutError, parseRetryAfterSeconds, PROBLEM_STATUSES,
  PROBLEM_CLASSES } from "../../dist/index.js";

const problem = (slug, status, extra = {}) => ({ type: `urn:executor:problem:${slug}`, title: "t", status, detail: "d", ...extra });

test("every slug maps to its class, with status, type, slug and detail", () => {
  for (const [slug, statuses] of Object.entries(PROBLEM_STATUSES)) {
    const err = apiErrorFor({ status: statuses[0], problem: problem(slug, statuses[0]) });
    assert.ok(err instanceof PROBLEM_CLASSES[slug]);
    assert.ok(err instanceof ApiError && err instanceof ExecutorError && err instanceof Error);
    assert.equal(err.slug, slug);
    assert.equal(err.status, statuses[0]);
    assert.equal(err.type, `urn:executor:problem:${slug}`);
    assert.equal(err.detail, "d");
    assert.equal(err.name, PROBLEM_CLASSES[slug].name);
    assert.ok(isProblem(err, slug));
  }
});

test("entitlement refusals share a parent", () => {
  const err = apiErrorFor({ status: 403, problem: problem("entitlement_used_up", 403) });
  assert.ok(err instanceof EntitlementUsedUpError && err instanceof EntitlementError);
  assert.ok(!isProblem(err, "entitlement_missing"));
});

test("violations and Retry-After are carried", () => {
  const headers = new Headers({ "retry-after": "3" });
  const err = apiErrorFor({ status: 429, headers, problem: problem("rate_limited", 429) });
  assert.ok(err instanceof RateLimitedError);
  assert.equal(err.retryAfter, 3);
  const invalid = apiErrorFor({ status: 422, problem: problem("input_invalid", 422, { errors: [{ pointer: "/text", detail: "x" }] }) });
  assert.ok(invalid instanceof InputInvalidError);
  assert.equal(invalid.errors[0].pointer, "/text");
  assert.match(invalid.message, /^422 t: d$/);
});

test("an unknown slug or a body that is no problem is a plain ApiError", () => {
  const newer = apiErrorFor({ status: 418, problem: problem("teapot", 418) });
  assert.equal(newer.constructor, ApiError);
  assert.equal(newer.slug, "teapot");
  const bare = apiErrorFor({ status: 502, body: "<html>bad gateway</html>" });
  assert.equal(bare.constructor, ApiError);
  assert.equal(bare.slug, undefined);
  assert.match(bare.message, /502/);
});

test("the transport errors form a tree", () => {
  assert.ok(new TimeoutError("x") instanceof NetworkError);
  assert.ok(new WaitTimeoutError("x", {}) instanceof TimeoutError);
  assert.ok(!(new NetworkError("x") instanceof ApiError));
});

test("Retry-After: seconds or an HTTP-date", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(parseRetryAfterSeconds("120", now), 120);
  assert.equal(parseRetryAfterSeconds("Thu, 01 Jan 2026 00:00:30 GMT", now), 30);
  assert.equal(parseRetryAfterSeconds("Wed, 31 Dec 2025 00:00:30 GMT", now), 0);
  assert.equal(parseRetryAfterSeconds("soon", now), undefined);
  assert.equal(parseRetryAfterSeconds(null, now), undefined);
});
