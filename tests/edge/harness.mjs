// Shared harness for the worker tests: the built worker under workerd (Miniflare API), a real
// origin on loopback that echoes what it received, and a real signal receiver.
import { createServer } from "node:http";
import { Miniflare } from "miniflare";

export const SCRIPT = "edge/build/index.js";

/** Starts an HTTP server on a free loopback port; `handler(req, body)` returns {status, headers, body}. */
export async function startServer(handler) {
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const reply = await handler(req, Buffer.concat(chunks));
    if (reply === null) return; // black hole: never answer
    res.writeHead(reply.status ?? 200, reply.headers ?? {});
    res.end(reply.body ?? "");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}

/** An origin that echoes the method, path and headers it received as JSON. */
export function echoOrigin() {
  const seen = [];
  const handler = (req, body) => {
    const record = { method: req.method, url: req.url, headers: req.headers, body: body.toString("utf8") };
    seen.push(record);
    return { status: 200, headers: { "content-type": "application/json", "x-origin": "echo" }, body: JSON.stringify(record) };
  };
  return { seen, handler };
}

/** The built worker in workerd, with the given vars and a local KV namespace for models. */
export async function startWorker(bindings) {
  return new Miniflare({
    modules: true,
    scriptPath: SCRIPT,
    modulesRules: [
      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: "2026-04-01",
    kvNamespaces: ["PREWARM_MODEL"],
    bindings,
  });
}
