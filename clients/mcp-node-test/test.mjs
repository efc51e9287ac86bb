// Lists and calls executor's agents as MCP tools with the official TypeScript SDK.
// Env: MCP_URL (http://host:port/mcp), MCP_TOKEN (a user's bearer token), MCP_TOOL (the tool
// the user is entitled to), MCP_TEXT (its input's text). Exits non-zero on any failure.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

function check(condition, what) {
  if (!condition) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

const { MCP_URL, MCP_TOKEN, MCP_TOOL, MCP_TEXT } = process.env;
if (!MCP_URL || !MCP_TOKEN || !MCP_TOOL || !MCP_TEXT) {
  console.error("set MCP_URL, MCP_TOKEN, MCP_TOOL and MCP_TEXT");
  process.exit(2);
}

const transport = new StreamableHTTPClientTransport(new URL(MCP_URL), {
  requestInit: { headers: { Authorization: `Bearer ${MCP_TOKEN}` } },
});
const client = new Client({ name: "executor-mcp-node-test", version: "0.0.0" });
try {
  await client.connect(transport);
  check(client.getServerCapabilities()?.tools?.listChanged === true, "the server announces tools.listChanged");

  const { tools } = await client.listTools();
  check(tools.length === 1 && tools[0].name === MCP_TOOL, `tools/list is exactly [${MCP_TOOL}]`);
  const tool = tools[0];
  check(tool.inputSchema?.type === "object" && tool.outputSchema?.type === "object", "the tool has its schemas");
  check(typeof tool._meta?.["executor/agent_id"] === "string", "the tool names its agent in _meta");

  const result = await client.callTool({ name: MCP_TOOL, arguments: { text: MCP_TEXT } });
  check(!result.isError, "tools/call succeeded");
  const words = MCP_TEXT.trim().split(/\s+/).length;
  check(result.structuredContent?.words === words, `structuredContent counts ${words} words`);
  const rendered = JSON.parse(result.content[0].text);
  const output = result.structuredContent;
  check(Object.keys(rendered).length === Object.keys(output).length &&
        Object.keys(output).every((key) => rendered[key] === output[key]), "the text block renders the output");
  const executionId = result._meta?.["executor/execution_id"];
  check(typeof executionId === "string" && result._meta["executor/status"] === "COMPLETED", "_meta has the execution");
  check(String(result._meta["executor/receipt_url"]).endsWith(`/v1/executions/${executionId}/receipt`),
        "_meta points at the receipt");
  console.log(`EXECUTION_ID=${executionId}`);
  console.log("the MCP flow holds");
} finally {
  await client.close();
}
