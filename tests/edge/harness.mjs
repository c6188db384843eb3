// Shared harness for the worker tests: the built worker under workerd (Miniflare API), a real
// origin on loopback that echoes what it received, and a real signal receiver.
import { createServer } from "node:http";
import { Miniflare } from "miniflare";

export const SCRIPT = process.env.EDGE_SCRIPT ?? "edge/worker.mjs";

/** Starts an HTTP server on a free loopback port; `handler(req, body)` returns {status, headers, body}. */
export async function startServer(handler) {
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const reply = await handler(req, Buffer.concat(chunks));
    if (reply === null) return; // black hole: never answer
    const body = Buffer.from(reply.body ?? "");
    res.writeHead(reply.status ?? 200, { "content-length": body.length, ...(reply.headers ?? {}) });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
  };
}

const VIDEO_SEGMENT = Buffer.alloc(256 * 1024, 7);

/** An origin that records what it received. Video paths answer with a video segment, `/api/`
 * with JSON, anything else with an HTML page; all echo the request as JSON in `x-echo`. */
export function echoOrigin() {
  const seen = [];
  const handler = (req, body) => {
    const record = { method: req.method, url: req.url, headers: req.headers, body: body.toString("utf8") };
    seen.push(record);
    const headers = { "x-origin": "echo", "set-cookie": "app_session=abc; Path=/" };
    if (req.url.startsWith("/watch/")) {
      return { status: 200, headers: { ...headers, "content-type": "video/mp2t" }, body: VIDEO_SEGMENT };
    }
    const type = req.url.startsWith("/api/") ? "application/json" : "text/html; charset=utf-8";
    return { status: 200, headers: { ...headers, "content-type": type }, body: JSON.stringify(record) };
  };
  return { seen, handler };
}

/** Miniflare's options for the built worker with the given vars (no KV: the caller adds it). */
export function workerOptions(bindings) {
  return {
    modules: true,
    scriptPath: SCRIPT,
    modulesRules: [
      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: "2026-04-01",
    bindings,
  };
}

/** The built worker in workerd, with the given vars and a local KV namespace for models. */
export async function startWorker(bindings) {
  return new Miniflare({ ...workerOptions(bindings), kvNamespaces: ["PREWARM_MODEL"] });
}

import { createHash, createHmac } from "node:crypto";
import { readFileSync } from "node:fs";

export const SECRETS = {
  PREWARM_SALT: "test-salt-not-for-production",
  COOKIE_SECRET: "test-cookie-secret",
  SIGNAL_KEY: "test-signal-key-0123",
};

/** A published model written by `cargo xtask edge-fixtures` (built by the shared crate). */
export function fixtureModel(name) {
  const path = new URL(`./.fixtures/${name}.json`, import.meta.url);
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new Error(`${path.pathname} is missing: run \`cargo xtask edge-fixtures\` first (${error})`);
  }
}

/** Bytes as a plain ArrayBuffer (what Miniflare's KV proxy accepts). */
export function arrayBuffer(bytes) {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
}

/** Writes a model into the worker's KV the way the trainer publishes: blobs, then the pointer. */
export async function publish(mf, model) {
  const kv = await mf.getKVNamespace("PREWARM_MODEL");
  for (const entry of model.entries) {
    await kv.put(entry.key, arrayBuffer(Buffer.from(entry.base64, "base64")));
  }
}

/** The worker's /__prewarm/status. */
export async function status(mf, token) {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const res = await mf.dispatchFetch("http://edge.test/__prewarm/status", { headers });
  if (res.status !== 200) throw new Error(`status answered ${res.status}: ${await res.text()}`);
  return res.json();
}

/** The public id of a signal key (`prewarm_shared::signals::key_id`). */
export function signalKeyId(key) {
  return createHash("sha256").update("prewarm signal key id\n").update(key).digest("hex").slice(0, 16);
}

/**
 * A trainer stand-in that checks each signal's key id and HMAC and keeps the batches. A
 * request that carries the key itself anywhere (a header, the body) is rejected: the key is
 * only ever used to sign.
 */
export function signalReceiver(key = SECRETS.SIGNAL_KEY) {
  const batches = [];
  const rejected = [];
  const raw = [];
  const handler = (req, body) => {
    raw.push({ headers: req.headers, body: body.toString("utf8") });
    const ts = req.headers["x-prewarm-timestamp"];
    const expected = createHmac("sha256", key).update(`${ts}\n`).update(body).digest("hex");
    const leaked = JSON.stringify(req.headers).includes(key) || body.toString("utf8").includes(key);
    if (leaked || req.headers["x-prewarm-key-id"] !== signalKeyId(key) || req.headers["x-prewarm-signature"] !== expected) {
      rejected.push(req.headers);
      return { status: 401, body: "bad auth" };
    }
    batches.push(JSON.parse(body.toString("utf8")));
    return { status: 202, body: "{}" };
  };
  return { batches, rejected, raw, handler };
}

/** Sets of cookies from a response, as name → value. */
export function setCookies(res) {
  const out = {};
  for (const line of res.headers.getSetCookie()) {
    const [pair] = line.split(";");
    const eq = pair.indexOf("=");
    out[pair.slice(0, eq)] = { value: pair.slice(eq + 1), line };
  }
  return out;
}

/** An `Etc/GMT±N` zone whose local hour is now as close as possible to `hour`. */
export function zoneWithLocalHour(hour) {
  let offset = (hour - new Date().getUTCHours() + 24) % 24;
  if (offset > 12) offset -= 24;
  // Etc/GMT zones have inverted signs: Etc/GMT-3 is UTC+3.
  return offset === 0 ? "Etc/GMT" : `Etc/GMT${offset > 0 ? "-" : "+"}${Math.abs(offset)}`;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a truthy value, or fails after `attempts`. */
export async function eventually(check, attempts = 50, delayMs = 50) {
  let last;
  for (let i = 0; i < attempts; i++) {
    last = await check();
    if (last) return last;
    await sleep(delayMs);
  }
  throw new Error(`condition not reached after ${attempts} attempts (last: ${JSON.stringify(last)})`);
}
