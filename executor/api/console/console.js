// The operator console: one page, plain ES modules, no build step (docs/console.md).
//
// It has no powers of its own: every view is calls to the public API with the bearer token the
// operator typed in, kept in this tab's sessionStorage (never in a URL or a cookie). What a
// token may not do answers a problem, shown as its title and detail. Everything inserted into
// the page goes in as text (textContent / text nodes), never as HTML.

import { claimedStatement, importKeySet, verifyBundle } from "./verify.js";

const TOKEN_KEY = "executor.console.token";
const STATUSES = ["PENDING", "RUNNING", "COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"];
const FINAL = new Set(["COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"]);
const POLL_MS = 2000;
const SHOWN_BYTES = 64 * 1024; // of an input, output or log: the rest is cut

const $ = (id) => document.getElementById(id);

// -- the DOM, as text only ------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child)); // a string becomes a text node
  }
  return el;
}

const link = (href, text) => h("a", { href }, text);
const time = (value) => (value ? value.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—");
const short = (id) => (id ? String(id).slice(0, 8) : "—");
const executionHref = (id) => `#/executions/${encodeURIComponent(id)}`;
const agentHref = (id) => `#/agents/${encodeURIComponent(id)}`;

function table(headings, rows, attrs = {}) {
  return h("table", attrs, h("thead", {}, h("tr", {}, headings.map((t) => h("th", {}, t)))), h("tbody", {}, rows));
}

// An object as a two-column table; nested objects become nested tables.
function facts(object) {
  return h("table", { class: "facts" }, h("tbody", {}, Object.entries(object).map(([name, value]) => h("tr", {},
    h("th", {}, name),
    h("td", {}, value !== null && typeof value === "object" && !Array.isArray(value) ? facts(value)
      : h("code", {}, value === null ? "null" : typeof value === "string" ? value : JSON.stringify(value)))))));
}

function problemLine(error) {
  return h("p", { class: "problem" }, error.message);
}

function showProblem(error) {
  const el = $("problem");
  el.textContent = error ? error.message : "";
  el.hidden = !error;
}

// A button that asks once more before it acts (no window.confirm: it blocks the page).
function confirmButton(label, action, attrs = {}) {
  let armed = null;
  const button = h("button", { type: "button", ...attrs, onclick: async () => {
    if (!armed) {
      button.textContent = `Confirm ${label.toLowerCase()}`;
      button.classList.add("armed");
      armed = setTimeout(() => { armed = null; button.textContent = label; button.classList.remove("armed"); }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    button.disabled = true;
    button.textContent = label;
    button.classList.remove("armed");
    try { await action(); } catch (error) { showProblem(error); } finally { button.disabled = false; }
  } }, label);
  return button;
}

// -- the API ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    const title = problem.title || `HTTP ${status}`;
    super(problem.detail ? `${title} — ${problem.detail}` : title);
    this.status = status;
    this.problem = problem;
  }
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

function idempotencyKey() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

function query(params) {
  const given = Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== "");
  return given.length ? `?${new URLSearchParams(given)}` : "";
}

async function call(method, path, { json, bytes = false, creates = false, signal } = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  if (creates) headers["Idempotency-Key"] = idempotencyKey(); // a retry of this request would replay
  const response = await fetch(path, {
    method, headers, signal, cache: "no-store", body: json === undefined ? undefined : JSON.stringify(json),
  });
  if (!response.ok) {
    let problem = {};
    try { problem = await response.json(); } catch { /* not a problem document */ }
    if (response.status === 401) signOut();
    throw new ApiError(response.status, problem);
  }
  if (response.status === 204) return null;
  return bytes ? new Uint8Array(await response.arrayBuffer()) : response.json();
}

const get = (path, options) => call("GET", path, options);
const post = (path, json, options = {}) => call("POST", path, { json, ...options });

// Server-Sent Events over fetch (an EventSource cannot send the Authorization header).
async function followEvents(id, signal, onEvent) {
  const response = await fetch(`/v1/executions/${encodeURIComponent(id)}/events`, {
    headers: { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" }, signal, cache: "no-store",
  });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) kind = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(kind, JSON.parse(data.join("\n")));
    }
  }
}

// Run `task` now and every POLL_MS until the view is left.
function every(signal, task) {
  const tick = async () => {
    if (signal.aborted) return;
    try { await task(); } catch (error) { if (!signal.aborted) showProblem(error); }
    if (!signal.aborted) setTimeout(tick, POLL_MS);
  };
  tick();
}

// -- signing in and routing ---------------------------------------------------------------------

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  route();
}

let leaving = null; // aborts the current view's polls and streams

function route() {
  leaving?.abort();
  leaving = new AbortController();
  const signal = leaving.signal;
  showProblem(null);
  const view = $("view");
  view.replaceChildren();
  const signedIn = Boolean(token());
  $("sign-in").hidden = signedIn;
  $("nav").hidden = !signedIn;
  if (!signedIn) { $("token").focus(); return; }
  const [name, id] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  for (const a of $("nav").querySelectorAll("a")) {
    a.classList.toggle("current", a.getAttribute("href") === `#/${name || "executions"}`);
  }
  const views = { executions: id ? () => executionView(id, signal) : () => executionsView(signal),
    agents: id ? () => agentView(id, signal) : () => agentsView(signal), fleet: () => fleetView(signal),
    tokens: () => tokensView(signal), entitlements: () => entitlementsView(signal) };
  (views[name] || views.executions)();
}

function start() {
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = $("token").value.trim();
    $("token").value = "";
    if (!typed) return;
    sessionStorage.setItem(TOKEN_KEY, typed);
    if (!location.hash) location.hash = "#/executions";
    route();
  });
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  route();
}

// -- executions ---------------------------------------------------------------------------------

const filters = { status: "", agent_id: "", user: "", created_since: "", created_before: "" };

// A datetime-local value is the browser's local time without an offset; the API wants an instant.
const instant = (local) => (local ? new Date(local).toISOString() : "");
const agentNames = new Map();

async function loadAgentNames() {
  let cursor = null;
  do {
    const page = await get(`/v1/agents${query({ limit: 100, cursor })}`);
    for (const agent of page.items) agentNames.set(agent.id, agent.name);
    cursor = page.next_cursor;
  } while (cursor);
}

function duration(record) {
  if (!record.started_at || !record.finished_at) return "—";
  return `${Math.max(0, Date.parse(record.finished_at) - Date.parse(record.started_at))} ms`;
}

function executionsView(signal) {
  const status = h("select", { name: "status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  status.value = filters.status;
  const agent = h("input", { name: "agent_id", placeholder: "agent id", value: filters.agent_id });
  const user = h("input", { name: "user", placeholder: "user", value: filters.user });
  const since = h("input", { name: "created_since", type: "datetime-local", step: "0.001", title: "created at or after",
    value: filters.created_since });
  const before = h("input", { name: "created_before", type: "datetime-local", step: "0.001", title: "created before",
    value: filters.created_before });
  const body = h("div", { id: "executions" });
  const pages = [null]; // the cursor of each page seen: [first, second, ...]
  const nav = h("p", { class: "pager" });
  const form = h("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    Object.assign(filters, { status: status.value, agent_id: agent.value.trim(), user: user.value.trim(),
      created_since: since.value, created_before: before.value });
    pages.length = 1;
    refresh();
  } }, status, agent, user, h("label", {}, "from ", since), h("label", {}, "to ", before),
    h("button", { type: "submit" }, "Filter"));
  $("view").append(h("h2", {}, "Executions"),
    h("p", { class: "note" }, "Newest first, refreshed every 2 s. Filters: status, agent, user, and a window of ",
      "creation time in your browser's time zone (from is included, to is not)."), form, body, nav);
  const refresh = async () => {
    const cursor = pages[pages.length - 1];
    const created = { created_since: instant(filters.created_since), created_before: instant(filters.created_before) };
    const page = await get(`/v1/executions${query({ ...filters, ...created, limit: 25, cursor })}`, { signal });
    const unknown = page.items.some((e) => !agentNames.has(e.agent_id));
    if (unknown) await loadAgentNames().catch(() => {});
    body.replaceChildren(table(["id", "status", "agent", "version", "owner", "created", "duration"],
      page.items.map((e) => h("tr", { "data-id": e.id },
        h("td", {}, link(executionHref(e.id), short(e.id))),
        h("td", { class: `status ${e.status}` }, e.status),
        h("td", {}, link(agentHref(e.agent_id), agentNames.get(e.agent_id) || short(e.agent_id))),
        h("td", {}, e.agent_version), h("td", {}, e.owner), h("td", {}, time(e.created_at)),
        h("td", {}, duration(e))))));
    nav.replaceChildren(
      pages.length > 1 ? h("button", { type: "button", onclick: () => { pages.pop(); refresh(); } }, "Newer") : "",
      page.next_cursor ? h("button", { type: "button", onclick: () => { pages.push(page.next_cursor); refresh(); } },
        "Older") : "");
  };
  every(signal, refresh);
}

function bodySection(label, load) {
  const pre = h("pre", {}, "…");
  const details = h("details", { class: "body" }, h("summary", {}, label), pre);
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    loaded = true;
    try {
      const bytes = await load();
      const text = new TextDecoder().decode(bytes.subarray(0, SHOWN_BYTES));
      pre.textContent = bytes.length > SHOWN_BYTES ? `${text}\n… (${bytes.length} bytes, cut)` : text || "(empty)";
    } catch (error) {
      loaded = false;
      pre.textContent = error.message;
    }
  });
  return details;
}

function executionView(id, signal) {
  const path = `/v1/executions/${encodeURIComponent(id)}`;
  const record = h("section", { id: "record" });
  const verdict = h("div", { id: "verdict", class: "verdict" });
  const hooks = h("section", { id: "webhooks" });
  // The task's stderr as it runs (`event: stderr`): a live view, capped; the whole log is below.
  const live = h("pre", { id: "live-stderr", hidden: true, "aria-live": "polite" });
  const cancel = h("button", { type: "button", id: "cancel", disabled: true, onclick: async () => {
    cancel.disabled = true;
    try { show(await post(`${path}/cancel`)); } catch (error) { showProblem(error); }
  } }, "Cancel");
  const verify = h("button", { type: "button", id: "verify", disabled: true,
    onclick: () => verifyReceipt(path, verdict, verify) }, "Verify receipt");
  $("view").append(h("h2", {}, "Execution ", h("code", {}, id)), h("p", { class: "actions" }, cancel, verify),
    verdict, record, live,
    h("h3", {}, "Input, output, log"),
    bodySection("input (stdin, as the task read it)", () => get(`${path}/input`, { bytes: true })),
    bodySection("stdout", () => get(`${path}/stdout`, { bytes: true })),
    bodySection("log (stderr)", () => get(`${path}/logs`, { bytes: true })),
    h("h3", {}, "Webhook deliveries"), hooks);

  let final = false;
  function show(current) {
    record.replaceChildren(h("p", {}, "Status: ", h("strong", { id: "status", class: `status ${current.status}` },
      current.status)), facts(current));
    final = FINAL.has(current.status);
    cancel.disabled = final;
    verify.disabled = !final;
    if (final) loadWebhooks(path, hooks).catch((error) => hooks.replaceChildren(problemLine(error)));
  }

  (async () => {
    try {
      show(await get(path, { signal }));
      if (final) return;
      await followEvents(id, signal, (kind, data) => {
        if (kind === "final") show(data);
        else if (kind === "stderr") showStderr(live, data);
        else if (kind === "status" && !final) { const el = $("status"); if (el) { el.textContent = data.status; el.className = `status ${data.status}`; } }
      });
      while (!final && !signal.aborted) show(await get(`${path}?wait=20`, { signal })); // the stream broke off
    } catch (error) {
      if (!signal.aborted) showProblem(error);
    }
  })();
}

const LIVE_LINES = 500;

function showStderr(into, data) {
  into.hidden = false;
  into.append(("line" in data ? data.line : `… ${data.dropped} line(s) not shown live (over the caps)`) + "\n");
  while (into.childNodes.length > LIVE_LINES) into.firstChild.remove();
  into.scrollTop = into.scrollHeight;
}

async function loadWebhooks(path, into) {
  const page = await get(`${path}/webhooks?limit=100`);
  if (!page.items.length) { into.replaceChildren(h("p", { class: "note" }, "No webhook was due for this execution.")); return; }
  into.replaceChildren(table(["delivery", "event", "url", "status", "attempts", ""], page.items.map((d) => h("tr", {},
    h("td", {}, h("code", {}, short(d.id))), h("td", {}, d.event_type), h("td", {}, d.url),
    h("td", { class: `delivery ${d.status}` }, d.status, d.next_attempt_at ? ` (next ${time(d.next_attempt_at)})` : ""),
    h("td", {}, h("ol", {}, d.attempts.map((a) => h("li", {},
      `${time(a.started_at)}: ${a.status_code === null ? "no answer" : `HTTP ${a.status_code}`}, ${a.duration_ms} ms`,
      a.error ? ` — ${a.error}` : ""))), d.attempts.length ? "" : "none yet"),
    h("td", {}, d.status === "failed" ? h("button", { type: "button", onclick: async () => {
      try { await post(`${path}/webhooks/${encodeURIComponent(d.id)}/resend`); await loadWebhooks(path, into); } catch (error) { showProblem(error); }
    } }, "Resend") : "")))));
}

// The receipt, checked here with WebCrypto against the published keys and a fresh signed log head.
async function verifyReceipt(path, verdict, button) {
  button.disabled = true;
  verdict.replaceChildren(h("p", {}, "verifying…"));
  try {
    if (!globalThis.crypto?.subtle) throw new Error("cannot verify here: WebCrypto needs a secure context (HTTPS or localhost)");
    const keys = await importKeySet(await get("/v1/keys"));
    const head = await get("/v1/log/head");
    const size = claimedStatement(head)?.tree_size;
    let bundle;
    let trustedHead = head;
    try {
      bundle = await get(`${path}/receipt${query({ tree_size: Number.isInteger(size) ? size : null })}`);
    } catch (error) {
      if (!(error instanceof ApiError) || ![404, 422].includes(error.status)) throw error;
      bundle = await get(`${path}/receipt`); // that head does not hold the receipt: the newest does
      trustedHead = null;
    }
    // The bodies, when the receipt says it hashed them and they are still kept (not after retention).
    const claimed = claimedStatement(bundle.envelope) || {};
    const body = async (name, wanted) => {
      if (typeof wanted !== "string") return undefined;
      try { return await get(`${path}/${name}`, { bytes: true }); } catch (error) {
        if (error instanceof ApiError && error.status === 410) return undefined;
        throw error;
      }
    };
    const inputBytes = await body("input", claimed.input_sha256);
    const outputBytes = await body("stdout", claimed.output_sha256);
    const report = await verifyBundle(bundle, keys, { inputBytes, outputBytes, trustedHead });
    const checked = [`signatures against /v1/keys (${keys.size} key${keys.size === 1 ? "" : "s"})`,
      "RFC 8785 payload", "RFC 9162 inclusion proof", trustedHead ? "the current signed log head" : null,
      inputBytes ? "input hash" : null, outputBytes ? "output hash" : null].filter(Boolean).join(", ");
    if (report.valid) {
      verdict.replaceChildren(h("p", { class: "valid" }, "valid"),
        h("p", { class: "note" }, `Checked in this browser: ${checked}. Leaf ${report.statement.log_index} of the log `,
          `of size ${report.head.tree_size}, signed by ${report.statement.key_id}.`));
    } else {
      verdict.replaceChildren(...report.failures.map((f) => h("p", { class: "invalid" }, `invalid: ${f.reason} — ${f.detail}`)),
        h("p", { class: "note" }, `Checked in this browser: ${checked}.`));
    }
    if (report.statement) verdict.append(h("details", {}, h("summary", {}, "The receipt's statement"), facts(report.statement)));
  } catch (error) {
    verdict.replaceChildren(h("p", { class: "invalid" }, `not verified: ${error.message}`));
  } finally {
    button.disabled = false;
  }
}

// -- agents -------------------------------------------------------------------------------------

function agentsView(signal) {
  const list = h("div", {});
  $("view").append(h("h2", {}, "Agents"), list);
  (async () => {
    const rows = [];
    let cursor = null;
    do {
      const page = await get(`/v1/agents${query({ limit: 100, cursor })}`, { signal });
      for (const a of page.items) {
        agentNames.set(a.id, a.name);
        rows.push(h("tr", { "data-id": a.id }, h("td", {}, link(agentHref(a.id), a.name)), h("td", {}, a.kind),
          h("td", {}, a.version), h("td", {}, a.status), h("td", {}, a.image), h("td", {}, h("code", {}, a.id))));
      }
      cursor = page.next_cursor;
    } while (cursor);
    list.replaceChildren(table(["name", "kind", "newest version", "status", "image", "id"], rows));
  })().catch((error) => list.replaceChildren(problemLine(error)));
}

const pct = (rate) => (rate === null ? "—" : `${(rate * 100).toFixed(1)} %`);
const ms = (value) => (value === null ? "—" : `${Math.round(value)} ms`);

// An SVG element (built like h, attributes only: the CSP forbids style attributes, CSS classes do it).
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children) el.append(child instanceof Node ? child : String(child));
  return el;
}

// The stats' `hourly` series as bars: one per hour (`rect.bar`, its failed part `rect.failed` on top).
function hourlyChart(hours) {
  const [barW, gap, height, axis] = [14, 2, 80, 16];
  const top = Math.max(1, ...hours.map((b) => b.executions));
  const scale = (n) => Math.round((n / top) * height);
  const width = hours.length * (barW + gap);
  const hour = (start) => start.slice(11, 16);
  const chart = svg("svg", { class: "chart", width, height: height + axis, viewBox: `0 0 ${width} ${height + axis}`,
    role: "img", "aria-label": `executions per hour, at most ${top}` });
  hours.forEach((b, i) => {
    const x = i * (barW + gap);
    const label = `${time(b.start)}: ${b.executions} executions, ${b.completed} completed, ${b.failed} failed`;
    chart.append(svg("rect", { class: "bar", x, y: height - scale(b.executions), width: barW,
      height: scale(b.executions), "data-start": b.start, "data-executions": b.executions }, svg("title", {}, label)));
    if (b.failed) {
      chart.append(svg("rect", { class: "failed", x, y: height - scale(b.failed), width: barW, height: scale(b.failed) },
        svg("title", {}, label)));
    }
  });
  chart.append(svg("line", { class: "axis", x1: 0, y1: height + 0.5, x2: width, y2: height + 0.5 }),
    svg("text", { x: 0, y: height + axis - 3 }, hour(hours[0].start)),
    svg("text", { x: width, y: height + axis - 3, "text-anchor": "end" }, hour(hours[hours.length - 1].start)));
  const total = hours.reduce((sum, b) => sum + b.executions, 0);
  const failed = hours.reduce((sum, b) => sum + b.failed, 0);
  return h("div", { class: "hourly" }, chart,
    h("p", { class: "note" }, `${total} executions in 24 h, ${failed} failed or timed out (red); the tallest bar is `,
      `${top}. Hover a bar for its hour.`));
}

function agentView(id, signal) {
  const base = `/v1/agents/${encodeURIComponent(id)}`;
  const title = h("h2", {}, "Agent ", h("code", {}, id));
  const versions = h("section", { id: "versions" });
  const hourly = h("section", { id: "hourly" });
  $("view").append(title, versions, h("h3", {}, "Executions per hour, the last 24 hours (UTC)"), hourly);
  const load = async () => {
    const all = [];
    let cursor = null;
    do {
      const page = await get(`${base}/versions${query({ limit: 100, cursor })}`, { signal });
      all.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    let stats = new Map();
    let statsProblem = null;
    let found = null;
    try {
      found = await get(`${base}/stats`, { signal });
      title.replaceChildren("Agent ", found.name, " ", h("code", {}, id));
      stats = new Map(found.versions.map((v) => [v.version, v]));
    } catch (error) {
      statsProblem = error;
    }
    if (all.length) title.replaceChildren("Agent ", all[0].name, " ", h("code", {}, id));
    const move = (v, action) => confirmButton(action[0].toUpperCase() + action.slice(1), async () => {
      await post(`${base}/versions/${v.version}/${action}`);
      await load();
    });
    hourly.replaceChildren(found && found.hourly ? hourlyChart(found.hourly) : "—");
    versions.replaceChildren(statsProblem ? problemLine(statsProblem) : "", table(
      ["version", "status", "image", "runtime", "executions", "live", "success", "duration p50 / p95",
        "latency p50 / p95", "by outcome", ""],
      all.map((v) => {
        const s = stats.get(v.version);
        return h("tr", { "data-version": v.version }, h("td", {}, v.version), h("td", { class: "version-status" }, v.status),
          h("td", {}, v.image), h("td", {}, v.runtime || "default"),
          h("td", {}, s ? s.executions : "—"), h("td", {}, s ? s.live : "—"), h("td", {}, s ? pct(s.success_rate) : "—"),
          h("td", {}, s ? `${ms(s.duration_ms.p50)} / ${ms(s.duration_ms.p95)}` : "—"),
          h("td", {}, s ? `${ms(s.latency_ms.p50)} / ${ms(s.latency_ms.p95)}` : "—"),
          h("td", {}, s ? Object.entries(s.by_status).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(", ") || "—" : "—"),
          h("td", {}, v.status === "published" ? move(v, "deprecate") : "", v.status !== "withdrawn" ? move(v, "withdraw") : ""));
      })));
  };
  load().catch((error) => versions.replaceChildren(problemLine(error)));
}

// -- the fleet ----------------------------------------------------------------------------------

const mb = (bytes) => (bytes === null ? "—" : `${(bytes / 1e6).toFixed(1)} MB`);

function fleetView(signal) {
  const queue = h("p", { id: "queue" }, "—");
  const status = h("section", { id: "instance" });
  const images = h("section", { id: "images" });
  $("view").append(h("h2", {}, "Fleet"), h("h3", {}, "The job queue (all instances)"), queue,
    h("h3", {}, "This instance (GET /v1/status, every 2 s)"), status, h("h3", {}, "Images"), images);
  every(signal, async () => {
    try {
      const current = await get("/v1/status", { signal });
      const { queue: q, ...instance } = current;
      queue.replaceChildren(q === null || q === undefined ? "unknown (Redis did not answer)"
        : h("span", {}, "depth ", h("strong", { class: "depth" }, q.depth), q.oldest_age_s === null ? ", empty"
          : [", the oldest job queued ", h("strong", { class: "oldest" }, `${q.oldest_age_s.toFixed(1)} s`), " ago"],
        q.classes ? [" (by class: ", Object.entries(q.classes).map(([name, c]) => `${name} ${c.depth}`).join(", "),
          ")"] : ""));
      status.replaceChildren(facts(instance));
    } catch (error) {
      if (!signal.aborted) status.replaceChildren(problemLine(error));
    }
  });
  const loadImages = async () => {
    const page = await get("/v1/images?limit=100", { signal });
    const result = h("p", { class: "note" });
    const build = (names) => h("button", { type: "button", onclick: async (event) => {
      event.target.disabled = true;
      result.textContent = `building ${names.join(", ")}… (this can take minutes)`;
      try {
        const built = await post("/v1/images/build", { names });
        result.textContent = built.items.map((i) => `${i.tag}: ${i.cached ? "already built" : "built"} (${short(i.id.slice(7))})`).join("; ");
        await loadImages();
      } catch (error) { result.textContent = error.message; } finally { event.target.disabled = false; }
    } }, `Build ${names.join(", ")}`);
    images.replaceChildren(table(["id", "tags", "size", "created", "used by agent versions", ""],
      page.items.map((i) => h("tr", {}, h("td", {}, h("code", {}, i.id.slice(7, 19))), h("td", { title: i.tags.join("\n") },
        i.tags.slice(0, 3).join(", "), i.tags.length > 3 ? ` (+${i.tags.length - 3} more)` : ""),
        h("td", {}, mb(i.size)), h("td", {}, i.created ? time(new Date(i.created * 1000).toISOString()) : "—"),
        h("td", {}, i.used_by_agent_versions),
        h("td", {}, confirmButton("Delete", async () => {
          await call("DELETE", `/v1/images/${i.tags[0] || i.id}`);
          await loadImages();
        }))))),
    h("p", {}, "Buildable from the images folder: ", page.buildable.map((name) => build([name]))), result);
  };
  loadImages().catch((error) => images.replaceChildren(problemLine(error)));
}

// -- tokens -------------------------------------------------------------------------------------

function tokenState(t) {
  if (t.revoked_at) return `revoked ${time(t.revoked_at)}`;
  if (t.expires_at && Date.parse(t.expires_at) <= Date.now()) return `expired ${time(t.expires_at)}`;
  return "live";
}

function tokensView(signal) {
  const role = h("select", { name: "role" }, ["user", "service", "operator"].map((r) => h("option", { value: r }, r)));
  const subject = h("input", { name: "subject", placeholder: "subject", required: true, maxlength: 200 });
  const expires = h("input", { name: "expires_at", type: "datetime-local", title: "expires (optional)" });
  const issued = h("div", { id: "issued" });
  const list = h("section", { id: "tokens" });
  const create = h("form", { class: "filters", onsubmit: async (event) => {
    event.preventDefault();
    try {
      const made = await post("/v1/tokens", { role: role.value, subject: subject.value.trim(),
        expires_at: expires.value ? new Date(expires.value).toISOString() : null }, { creates: true });
      issued.replaceChildren(h("p", { class: "secret" }, `New ${made.role} token for ${made.subject} — shown once, copy it now: `,
        h("code", {}, made.token)));
      subject.value = "";
      await load();
    } catch (error) { showProblem(error); }
  } }, role, subject, expires, h("button", { type: "submit" }, "Create token"));
  $("view").append(h("h2", {}, "Tokens"), create, issued, list);
  const load = async () => {
    const rows = [];
    let cursor = null;
    do {
      const page = await get(`/v1/tokens${query({ limit: 100, cursor })}`, { signal });
      rows.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && rows.length < 500);
    list.replaceChildren(table(["id", "role", "subject", "created", "by", "expires", "last used", "state", ""],
      rows.map((t) => h("tr", { "data-id": t.id }, h("td", {}, h("code", {}, short(t.id))), h("td", {}, t.role),
        h("td", {}, t.subject), h("td", {}, time(t.created_at)), h("td", {}, t.created_by || "host"),
        h("td", {}, time(t.expires_at)), h("td", {}, time(t.last_used_at)),
        h("td", { class: "state" }, tokenState(t)),
        h("td", {}, t.revoked_at ? "" : confirmButton("Revoke", async () => {
          await call("DELETE", `/v1/tokens/${encodeURIComponent(t.id)}`);
          await load();
        }))))));
  };
  load().catch((error) => list.replaceChildren(problemLine(error)));
}

// -- entitlements -------------------------------------------------------------------------------

function entitlementsView(signal) {
  const user = h("input", { name: "user", placeholder: "user" });
  const agent = h("input", { name: "agent_id", placeholder: "agent id" });
  const list = h("section", { id: "entitlements" });
  const form = h("form", { class: "filters", onsubmit: (event) => { event.preventDefault(); load().catch(showProblem); } },
    user, agent, h("button", { type: "submit" }, "Filter"));
  $("view").append(h("h2", {}, "Entitlements"), form, list);
  const load = async () => {
    const page = await get(`/v1/entitlements${query({ limit: 100, user: user.value.trim(), agent_id: agent.value.trim() })}`,
      { signal });
    list.replaceChildren(table(["id", "user", "agent", "state", "uses", "left", "expires", "granted by", ""],
      page.items.map((e) => h("tr", { "data-id": e.id }, h("td", {}, h("code", {}, short(e.id))), h("td", {}, e.user),
        h("td", {}, link(agentHref(e.agent_id), agentNames.get(e.agent_id) || short(e.agent_id))),
        h("td", { class: "state" }, e.state), h("td", {}, e.uses === null ? "unlimited" : e.uses),
        h("td", {}, e.uses_remaining === null ? "—" : e.uses_remaining), h("td", {}, time(e.expires_at)),
        h("td", {}, e.granted_by),
        h("td", {}, e.revoked_at ? "" : confirmButton("Revoke", async () => {
          await call("DELETE", `/v1/entitlements/${encodeURIComponent(e.id)}`);
          await load();
        }))))),
    page.next_cursor ? h("p", { class: "note" }, "Showing the newest 100: filter by user or agent to see others.") : "");
  };
  load().catch((error) => list.replaceChildren(problemLine(error)));
}

start();
