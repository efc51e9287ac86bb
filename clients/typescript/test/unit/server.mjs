// A local node:http server answering from a script, recording every request it gets.
import { createServer } from "node:http";

/**
 * `script`: one function per expected request, called as (req, res, body); the last one repeats.
 * Returns { url, requests, close }.
 */
export async function serve(script) {
  const requests = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method, url: req.url, headers: req.headers, body: body.toString("utf8"), at: Date.now() });
      const step = script[Math.min(requests.length - 1, script.length - 1)];
      step(req, res, body);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

export function json(status, body, headers = {}) {
  return (req, res) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };
}

export function problem(status, slug, headers = {}, extra = {}) {
  return (req, res) => {
    res.writeHead(status, { "content-type": "application/problem+json", ...headers });
    res.end(JSON.stringify({ type: `urn:executor:problem:${slug}`, title: slug.replace(/_/g, " "), status,
      detail: `a ${slug} problem`, ...extra }));
  };
}

/** Closes the connection without an answer: a network error for the client. */
export function hangUp() {
  return (req, res) => { req.socket.destroy(); };
}

export const EXECUTION = {
  id: "8d2b1c9e-0000-4000-8000-000000000001", agent_id: "11111111-2222-4333-8444-555555555555", agent_version: 1,
  status: "COMPLETED", input: { text: "hi" }, output: { text: "hi" }, error: null, exit_code: 0,
};
