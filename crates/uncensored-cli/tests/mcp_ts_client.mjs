// An independent MCP client in another language: the official TypeScript
// SDK (`@modelcontextprotocol/sdk` from npm, the client inside most MCP
// hosts) driving `uncensored mcp` over stdio or Streamable HTTP. Its
// `callTool` validates every result's structuredContent against the tool's
// outputSchema, error results included, and turns a mismatch into a
// protocol error: every tool error here must reach the caller as a tool
// result (isError) with its reason, message, advice and field. Run by
// tests/mcp.rs, which passes the SDK's package folder in UNCENSORED_MCP_TS_SDK.
// Prints one JSON summary line; any failed check exits non-zero with the reason.
//
// usage: node mcp_ts_client.mjs stdio COMMAND [ARGS...]
//        node mcp_ts_client.mjs http URL
import { createRequire } from "node:module";
import { join } from "node:path";

const sdkFolder = process.env.UNCENSORED_MCP_TS_SDK;
if (!sdkFolder) throw new Error("UNCENSORED_MCP_TS_SDK is not set");
// Resolved from inside the package, through its own exports map.
const require = createRequire(join(sdkFolder, "package.json"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { AjvJsonSchemaValidator } = require("@modelcontextprotocol/sdk/validation/ajv");

const TOOLS = ["generate_image", "get_balance", "get_job", "list_images", "submit_generation"];

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

async function checks(client) {
  const summary = { tool_errors: 0 };
  const { tools } = await client.listTools();
  check(JSON.stringify(tools.map((t) => t.name).sort()) === JSON.stringify(TOOLS), `tools: ${tools.map((t) => t.name)}`);
  // The SDK's own validator, compiled here too: a schema that accepted
  // anything would let every check below pass for nothing.
  const validator = new AjvJsonSchemaValidator();
  const validators = {};
  for (const tool of tools) {
    check(tool.outputSchema && tool.outputSchema.type === "object", `${tool.name}: an output schema of type object`);
    validators[tool.name] = validator.getValidator(tool.outputSchema);
    check(!validators[tool.name]({}).valid, `${tool.name}: the output schema accepts {}`);
  }
  const width = tools.find((t) => t.name === "generate_image").inputSchema.properties.image_width;
  check(width.minimum === 256 && width.maximum === 2048 && width.multipleOf === 8, `image_width ${JSON.stringify(width)}`);

  // callTool validates structuredContent itself: a mismatch throws here.
  const call = async (name, args) => {
    const result = await client.callTool({ name, arguments: args });
    const verdict = validators[name](result.structuredContent);
    check(verdict.valid, `${name}: ${verdict.errorMessage}`);
    return result;
  };

  const done = await call("generate_image", { prompt: "a lighthouse at dusk", image_width: 512, image_height: 384, thumbnail: true });
  check(!done.isError, `generate_image failed: ${JSON.stringify(done.content)}`);
  const data = done.structuredContent;
  check(data.status === "stored" && data.width === 512 && data.height === 384, `structured ${JSON.stringify(data)}`);
  for (const key of ["id", "job_id", "location", "sha256", "uri", "model"]) {
    check(data[key] != null, `structured content lacks ${key}: ${JSON.stringify(data)}`);
  }
  check(done.content.some((c) => c.type === "resource_link" && c.uri === data.uri), "a resource_link to the image");
  check(done.content.some((c) => c.type === "image" && c.mimeType === "image/jpeg"), "a JPEG thumbnail");

  const job = await call("get_job", { id: data.id });
  check(!job.isError && job.structuredContent.status === "stored", `get_job ${JSON.stringify(job.structuredContent)}`);
  check(Number.isInteger(data.cost_nanos) && data.cost_nanos > 0 && data.cost.startsWith("$"), `cost ${JSON.stringify(data)}`);
  const balance = await call("get_balance", {});
  check(!balance.isError && balance.structuredContent.daily_spend_nanos >= data.cost_nanos, `get_balance ${JSON.stringify(balance.structuredContent)}`);
  const listed = await call("list_images", { limit: 5 });
  check(!listed.isError && listed.structuredContent.images.length >= 1, `list_images ${JSON.stringify(listed.structuredContent)}`);

  // Tool errors, one per tool: a result with isError and the structured failure.
  const toolError = async (name, args, reason, field) => {
    const result = await call(name, args);
    check(result.isError === true, `${name} ${JSON.stringify(args)}: no isError`);
    const error = result.structuredContent && result.structuredContent.error;
    check(error && error.reason === reason, `${name}: reason ${JSON.stringify(error)}`);
    check(typeof error.message === "string" && error.message.length > 0, `${name}: message ${JSON.stringify(error)}`);
    check(typeof error.advice === "string" && error.advice.length > 0, `${name}: advice ${JSON.stringify(error)}`);
    check("field" in error, `${name}: no field key ${JSON.stringify(error)}`);
    if (field !== undefined) check(error.field === field, `${name}: field ${JSON.stringify(error)}`);
    check(result.content.some((c) => c.type === "text" && c.text.includes("hint:")), `${name}: the text names the advice`);
    summary.tool_errors += 1;
  };
  await toolError("generate_image", { prompt: "a harbour", image_width: 1001 }, "invalid_request", "image_width");
  // Refused by the API's moderation, which always concerns the prompt.
  await toolError("generate_image", { prompt: "a forbidden-term at dusk" }, "moderation", "prompt");
  await toolError("submit_generation", { prompt: "a harbour", image_height: 1001 }, "invalid_request", "image_height");
  await toolError("get_job", { id: "no-such-job" }, "not_found");
  await toolError("list_images", { limit: "many" }, "invalid_request");
  await toolError("get_balance", { unexpected: 1 }, "invalid_request");
  return summary;
}

async function main() {
  const [transportName, ...rest] = process.argv.slice(2);
  let transport;
  if (transportName === "stdio") {
    const [command, ...args] = rest;
    transport = new StdioClientTransport({ command, args, stderr: "inherit" });
  } else if (transportName === "http") {
    transport = new StreamableHTTPClientTransport(new URL(rest[0]));
  } else {
    throw new Error(`unknown transport ${transportName}`);
  }
  const client = new Client({ name: "uncensored-tests-ts", version: "1.0.0" });
  await client.connect(transport);
  try {
    const summary = await checks(client);
    summary.transport = transportName;
    console.log(JSON.stringify(summary));
  } finally {
    await client.close();
  }
}

main().catch((error) => {
  // A protocol error (an McpError) carries its JSON-RPC code.
  console.error(`${error.code !== undefined ? `protocol error ${error.code}: ` : ""}${error.message}`);
  process.exit(1);
});
