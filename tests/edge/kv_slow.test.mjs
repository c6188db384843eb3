// A slow or failing KV never makes users' requests wait: the worker's KV binding is wrapped
// (Miniflare `wrappedBindings`) by a script that reads from a test server answering after 2 s,
// or failing, and every read is counted there.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Miniflare } from "miniflare";
import { SECRETS, echoOrigin, eventually, fixtureModel, sleep, startServer, status, workerOptions } from "./harness.mjs";

const KV_WRAPPER = `
export default function (env) {
  const read = async (key) => {
    const res = await fetch(env.KV_URL + "/" + encodeURIComponent(key));
    if (res.status === 404) return null;
    if (res.status !== 200) throw new Error("KV read failed: HTTP " + res.status);
    return res.arrayBuffer();
  };
  return {
    get: (key) => read(key),
    getWithMetadata: async (key) => ({ value: await read(key), metadata: null }),
    put: async () => { throw new Error("read-only"); },
    list: async () => ({ keys: [], list_complete: true }),
    delete: async () => { throw new Error("read-only"); },
  };
}`;

/** A KV stand-in over HTTP: `mode` is "slow" (the model, after 2 s) or "error" (500 at once). */
async function kvServer(mode, model) {
  const entries = new Map(model.entries.map((e) => [e.key, Buffer.from(e.base64, "base64")]));
  const reads = [];
  const server = await startServer(async (req) => {
    const key = decodeURIComponent(req.url.slice(1));
    reads.push(key);
    if (mode === "error") return { status: 500, body: "KV is down" };
    await sleep(2000);
    const value = entries.get(key);
    return value ? { status: 200, body: value } : { status: 404, body: "" };
  });
  return { ...server, reads };
}

async function worker(originUrl, kvUrl) {
  return new Miniflare({
    workers: [
      {
        name: "prewarm",
        ...workerOptions({ ORIGIN_URL: originUrl, ...SECRETS, MODEL_CHECK_SECS: "30", MODEL_LOAD_TIMEOUT_MS: "300" }),
        wrappedBindings: { PREWARM_MODEL: { scriptName: "kv-wrapper", bindings: { KV_URL: kvUrl } } },
      },
      { name: "kv-wrapper", modules: true, script: KV_WRAPPER },
    ],
  });
}

/** A plain pass-through worker: the baseline for the latency figure. */
const PLAIN = `export default {
  fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.ORIGIN_URL + url.pathname + url.search, request);
  },
};`;

/** 200 sequential requests' latencies (ms), sorted. */
async function latencies(mf) {
  const out = [];
  for (let i = 0; i < 200; i++) {
    const started = performance.now();
    const res = await mf.dispatchFetch(`http://edge.test/page/${i}`, { headers: { "user-agent": "Mozilla/5.0" } });
    await res.arrayBuffer();
    out.push(performance.now() - started);
  }
  return out.sort((a, b) => a - b);
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

for (const mode of ["slow", "error"]) {
  test(`with KV ${mode === "slow" ? "answering after 2 s" : "failing"}, 200 requests are served without waiting on it`, async () => {
    const origin = echoOrigin();
    const server = await startServer(origin.handler);
    const kv = await kvServer(mode, fixtureModel("model-v1"));
    const mf = await worker(server.url, kv.url);
    try {
      const ours = await latencies(mf);
      const elapsed = ours.reduce((a, b) => a + b, 0).toFixed(0);
      assert.equal(origin.seen.length, 200, "every request reached the origin");
      // The figure the issue asks for, printed (never asserted: it depends on the machine): the
      // same 200 requests through a plain pass-through worker in the same run.
      const plain = new Miniflare({ modules: true, script: PLAIN, compatibilityDate: "2026-04-01", bindings: { ORIGIN_URL: server.url } });
      try {
        const theirs = await latencies(plain);
        const p = (q) => `${quantile(ours, q).toFixed(1)} vs ${quantile(theirs, q).toFixed(1)} ms (${(quantile(ours, q) / quantile(theirs, q)).toFixed(2)}x)`;
        console.log(`KV ${mode}: prewarm vs plain worker, p50 ${p(0.5)}, p99 ${p(0.99)}, max ${p(1)}`);
      } finally {
        await plain.dispose();
      }
      origin.seen.length = 200;
      // One read of the pointer for the isolate (the first request waited on it, bounded);
      // within MODEL_CHECK_SECS nothing retries it, however many requests come.
      const pointerReads = kv.reads.filter((k) => k === "current").length;
      assert.equal(pointerReads, 1, `pointer reads: ${kv.reads.join(", ")}`);
      console.log(`KV ${mode}: 200 requests in ${elapsed} ms, KV reads: ${kv.reads.join(", ")}`);
      if (mode === "slow") {
        // The slow reads finish in the background (the pointer, then the region's blob, each
        // read once) and the model arrives without any request having waited for it.
        await eventually(async () => {
          const res = await mf.dispatchFetch("http://edge.test/later", { headers: { "user-agent": "Mozilla/5.0" } });
          await res.arrayBuffer();
          return origin.seen.at(-1).headers["x-prewarm-model"] === "1";
        }, 100, 100);
        assert.equal(kv.reads.filter((k) => k === "current").length, 1, kv.reads.join(", "));
        assert.equal(kv.reads.filter((k) => k.startsWith("model/")).length, 1, kv.reads.join(", "));
      } else {
        const s = await status(mf);
        assert.equal(s.model.version, null);
        assert.ok(s.counters.kv_errors >= 1);
      }
    } finally {
      await mf.dispose();
      await kv.close();
      await server.close();
    }
  });
}
