#!/usr/bin/env node
// The marketplace flow against a live service, with the SDK alone (built into dist/).
//
//   EXECUTOR_URL=http://127.0.0.1:8080 EXECUTOR_OPERATOR_TOKEN=exe_… node test/flow.mjs
//
// The service must allow webhooks to 127.0.0.1 (EXECUTOR_WEBHOOK_ALLOW_PRIVATE=true) and have the
// image executor/busybox:latest. Prints one line per check; exits 0 only when every check holds.
import { createServer } from "node:http";
import { randomBytes } from "node:crypto";
import {
  Executor, InputInvalidError, EntitlementUsedUpError, ReceiptUnavailableError, isProblem, verifyWebhook,
  verifyReceipt,
} from "../dist/index.js";

const baseUrl = process.env.EXECUTOR_URL;
const operatorToken = process.env.EXECUTOR_OPERATOR_TOKEN;
if (!baseUrl || !operatorToken) {
  console.error("set EXECUTOR_URL and EXECUTOR_OPERATOR_TOKEN");
  process.exit(2);
}

const failed = [];
function check(name, holds, detail = "") {
  console.log(`${holds ? "ok  " : "FAIL"} ${name}${detail ? `: ${detail}` : ""}`);
  if (!holds) failed.push(name);
  return holds;
}

async function expectError(name, promise, Class, slug) {
  try {
    const value = await promise;
    return check(name, false, `no error; got ${JSON.stringify(value).slice(0, 300)}`);
  } catch (err) {
    return check(name, err instanceof Class && isProblem(err, slug), `${err.name} ${err.status ?? ""} ${err.slug ?? ""}: ${err.message}`);
  }
}

/** A webhook receiver on 127.0.0.1: keeps every request's headers and exact body bytes. */
async function startReceiver() {
  const deliveries = [];
  const waiters = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      deliveries.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(204).end();
      for (const wake of waiters.splice(0)) wake();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks/executor`,
    deliveries,
    /** The first delivery for which `match` holds, within `ms`. */
    async waitFor(match, ms) {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = deliveries.find(match);
        if (found || Date.now() > deadline) return found;
        await new Promise((resolve) => { waiters.push(resolve); setTimeout(resolve, 250); });
      }
    },
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

async function receiptWhenReady(client, executionId) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await client.receipt(executionId);
    } catch (err) {
      if (!(err instanceof ReceiptUnavailableError) || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

async function main() {
  const suffix = randomBytes(4).toString("hex");
  const operator = new Executor({ baseUrl, token: operatorToken, timeoutMs: 30_000 });

  const serviceToken = await operator.createToken({ role: "service", subject: `shop-${suffix}` });
  const userToken = await operator.createToken({ role: "user", subject: `alice-${suffix}` });
  check("operator creates a service token and a user token",
    serviceToken.token.startsWith("exe_") && userToken.role === "user", `${serviceToken.subject}, ${userToken.subject}`);
  const service = operator.withToken(serviceToken.token);
  const user = operator.withToken(userToken.token);

  const agent = await service.registerAgent({
    name: `echo-${suffix}`,
    image: "executor/busybox:latest",
    command: ["cat"],
    input_schema: { type: "object", required: ["text"], properties: { text: { type: "string" } } },
    output_schema: { type: "object" },
    pricing: { currency: "EUR", decimals: 2, per_call: 10 },
  });
  check("the service registers a priced agent", agent.pricing?.per_call === 10, `${agent.id} ${JSON.stringify(agent.pricing)}`);

  // Secrets for the egress gateway: write-only, versioned, never answered back.
  const written = await service.putSecret(agent.id, "model_key", "sk-flow-secret");
  const rewritten = await service.putSecret(agent.id, "model_key", "sk-flow-secret-2");
  const secrets = await service.listSecrets(agent.id);
  check("a secret is written, replaced and listed by name and version, never by value",
    written.version === 1 && rewritten.version === 2 && secrets.items.length === 1 && secrets.items[0].version === 2
      && !JSON.stringify([written, rewritten, secrets]).includes("sk-flow"), JSON.stringify(secrets));
  let userRefused = false;
  try {
    await user.putSecret(agent.id, "model_key", "x");
  } catch (err) {
    userRefused = err.status === 403;
  }
  check("a user may not write an agent's secret", userRefused);
  await service.deleteSecret(agent.id, "model_key");
  check("a deleted secret is gone", (await service.listSecrets(agent.id)).items.length === 0);

  const receiver = await startReceiver();
  try {
    const endpoint = await service.setWebhookEndpoint(receiver.url);
    check("the service's webhook endpoint points at its receiver", endpoint.url === receiver.url, endpoint.url ?? "null");

    const entitlement = await service.grantEntitlement({ user: userToken.subject, agent_id: agent.id, uses: 2 });
    check("the user is granted 2 uses", entitlement.uses === 2 && entitlement.uses_remaining === 2,
      `uses ${entitlement.uses}, remaining ${entitlement.uses_remaining}`);

    const statsBefore = await service.agentStats(agent.id);
    const executionsBefore = statsBefore.versions.reduce((sum, v) => sum + v.executions, 0);

    await expectError("invalid input throws InputInvalidError (422)", user.run(agent.id, { nope: true }),
      InputInvalidError, "input_invalid");

    const execution = await user.run(agent.id, { text: "hello world" }, { waitTimeoutMs: 120_000 });
    check("run completes with the output", execution.status === "COMPLETED" && execution.output?.text === "hello world",
      `${execution.status} ${JSON.stringify(execution.output)} ${JSON.stringify(execution.error)}`);
    check("the execution is priced", execution.cost?.amount === 10 && execution.cost?.currency === "EUR",
      JSON.stringify(execution.cost));

    const delivery = await receiver.waitFor((d) => d.body.includes(execution.id), 30_000);
    if (check("the receiver got a delivery", delivery !== undefined, `${receiver.deliveries.length} deliveries`)) {
      try {
        const event = verifyWebhook(endpoint.secret, delivery.headers, delivery.body);
        check("the delivery verifies with verifyWebhook and carries the execution id",
          event.data.execution.id === execution.id && event.type === "execution.completed", `${event.type} ${event.data.execution.id}`);
      } catch (err) {
        check("the delivery verifies with verifyWebhook and carries the execution id", false, `${err.name}: ${err.message}`);
      }
      let forged = false;
      try {
        verifyWebhook(endpoint.secret, delivery.headers, Buffer.concat([delivery.body, Buffer.from(" ")]));
      } catch (err) {
        forged = err.name === "WebhookVerificationError";
      }
      check("a tampered delivery does not verify", forged);
    }

    const keys = await new Executor({ baseUrl }).keys();
    const bundle = await receiptWhenReady(user, execution.id);
    const input = await user.executionInput(execution.id);
    const output = await user.executionStdout(execution.id);
    const report = verifyReceipt(bundle, keys, { input, output });
    check("the receipt bundle verifies offline (keys from /v1/keys, input and output bytes given)", report.valid,
      JSON.stringify(report.failures));
    check("the receipt is this execution's", report.statement?.execution_id === execution.id
      && report.statement?.cost?.amount === 10, `${report.statement?.execution_id} cost ${JSON.stringify(report.statement?.cost)}`);
    const wrongInput = verifyReceipt(bundle, keys, { input: new TextEncoder().encode('{"text":"something else"}') });
    check("other input bytes fail input_hash_mismatch", wrongInput.failures.some((f) => f.reason === "input_hash_mismatch"),
      JSON.stringify(wrongInput.failures.map((f) => f.reason)));
    const egress = await user.executionEgress(execution.id);
    check("an agent without egress sent nothing and its receipt binds none",
      egress.final && egress.data === null && egress.digest === null && report.statement?.egress === undefined,
      JSON.stringify(egress));
    const offered = verifyReceipt(bundle, keys, { egress: [] });
    check("an egress list offered for a receipt without egress fails egress_mismatch",
      offered.failures.some((f) => f.reason === "egress_mismatch"), JSON.stringify(offered.failures.map((f) => f.reason)));

    const statsAfter = await service.agentStats(agent.id);
    const executionsAfter = statsAfter.versions.reduce((sum, v) => sum + v.executions, 0);
    const completed = statsAfter.versions.reduce((sum, v) => sum + v.by_status.COMPLETED, 0);
    check("the agent's stats moved", executionsAfter > executionsBefore && completed >= 1,
      `executions ${executionsBefore} → ${executionsAfter}, completed ${completed}`);

    const second = await user.run(agent.id, { text: "again" }, { waitTimeoutMs: 120_000 });
    check("the second run completes", second.status === "COMPLETED" && second.output?.text === "again",
      `${second.status} ${JSON.stringify(second.output)}`);

    await expectError("the third run throws EntitlementUsedUpError", user.run(agent.id, { text: "three" }),
      EntitlementUsedUpError, "entitlement_used_up");

    const seen = [];
    for await (const item of user.executions({ limit: 1 })) seen.push(item.id);
    check("executions() pages through the user's executions", seen.includes(execution.id) && seen.includes(second.id),
      `${seen.length} executions`);
    const recent = await user.listExecutions({ created_since: second.created_at });
    check("listExecutions({ created_since }) keeps the window [since, …)",
      recent.items.length === 1 && recent.items[0].id === second.id, recent.items.map((e) => e.id).join(","));
    const events = [];
    for await (const event of user.events(second.id)) events.push(event.event);
    check("events() of a final execution ends with its final event", events.at(-1) === "final", events.join(","));
  } finally {
    await receiver.close();
  }
}

try {
  await main();
} catch (err) {
  check("the flow ran to its end", false, `${err?.name}: ${err?.message}\n${err?.stack ?? ""}`);
}
if (failed.length) {
  console.log(`\n${failed.length} check(s) failed: ${failed.join("; ")}`);
  process.exit(1);
}
console.log("\nthe marketplace flow holds");
