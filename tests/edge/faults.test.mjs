// Prewarm failing must never fail, repeat or leak a user's request: Wasm traps after the origin
// answered, the pass-through's stripping, concurrent requests in a trapping isolate, and the
// entry class's exported functions out of a service binding's reach.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Miniflare } from "miniflare";
import { SECRETS, echoOrigin, fixtureModel, publish, startServer, startWorker, status, workerOptions } from "./harness.mjs";

const DESKTOP_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";

async function setup() {
  const origin = echoOrigin();
  const server = await startServer(origin.handler);
  const mf = await startWorker({ ORIGIN_URL: server.url, ...SECRETS, MODEL_CHECK_SECS: "0", PREWARM_FAULT_INJECTION: "1" });
  await publish(mf, fixtureModel("model-v1"));
  return { origin, server, mf, close: async () => { await mf.dispose(); await server.close(); } };
}

const post = (mf, path, body, headers = {}) =>
  mf.dispatchFetch(`http://edge.test${path}`, { method: "POST", body, headers: { "user-agent": DESKTOP_UA, ...headers } });

test("a trap after the origin answered returns that answer, and the request reaches the origin once", async () => {
  const env = await setup();
  try {
    // The isolate's first request loads the model: the asynchronous handler serves it.
    const first = await post(env.mf, "/orders/first", "order=1", { "x-prewarm-fault": "panic-after-forward" });
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-origin"), "echo", "the origin's own response");
    assert.equal(JSON.parse(await first.text()).body, "order=1");
    assert.deepEqual(env.origin.seen.map((r) => r.url), ["/orders/first"], "sent once, not repeated");
    // Now the model is loaded: the synchronous path serves the next one.
    const second = await post(env.mf, "/orders/second", "order=2", { "x-prewarm-fault": "panic-after-forward" });
    assert.equal(second.status, 200);
    assert.equal(JSON.parse(await second.text()).body, "order=2");
    assert.deepEqual(env.origin.seen.map((r) => r.url), ["/orders/first", "/orders/second"]);
    const after = await post(env.mf, "/orders/third", "order=3");
    assert.equal(after.status, 200);
    await after.arrayBuffer();
    assert.ok(env.origin.seen.at(-1).headers["x-prewarm-profile"], "prewarm works again");
    assert.equal((await status(env.mf)).counters.panics_caught, 2);
  } finally {
    await env.close();
  }
});

test("the pass-through after a trap strips prewarm's cookies, spoofed tags and client addresses", async () => {
  const env = await setup();
  try {
    const warm = await env.mf.dispatchFetch("http://edge.test/warm", { headers: { "user-agent": DESKTOP_UA } });
    await warm.arrayBuffer();
    const res = await env.mf.dispatchFetch("http://edge.test/boom", {
      headers: {
        "user-agent": DESKTOP_UA,
        "x-prewarm-fault": "panic",
        cookie: "pw_id=0123456789abcdef0123456789abcdef; theme=dark; pw_state=forged",
        "x-prewarm-profile": "9",
        "x-forwarded-for": "198.51.100.7",
        "x-real-ip": "198.51.100.7",
      },
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    const seen = env.origin.seen.at(-1);
    assert.equal(seen.url, "/boom");
    assert.equal(seen.headers.cookie, "theme=dark", "only the application's cookie");
    for (const name of ["x-prewarm-profile", "x-prewarm-fault", "x-forwarded-for", "x-real-ip"]) {
      assert.equal(seen.headers[name], undefined, name);
    }
    assert.equal((await status(env.mf)).counters.panics_caught, 1);
  } finally {
    await env.close();
  }
});

test("when one request traps, the isolate's other requests still get their own origin answers, each sent once", async () => {
  const env = await setup();
  try {
    // A fresh isolate: all of these wait for the first model load, on the asynchronous path.
    const paths = ["/a", "/b", "/c", "/d", "/e"];
    const responses = await Promise.all(
      paths.map((path) => post(env.mf, path, `body${path}`, path === "/c" ? { "x-prewarm-fault": "panic-after-forward" } : {})),
    );
    for (const [i, res] of responses.entries()) {
      assert.equal(res.status, 200, paths[i]);
      assert.equal(JSON.parse(await res.text()).body, `body${paths[i]}`, "each gets its own answer");
    }
    assert.deepEqual(env.origin.seen.map((r) => r.url).sort(), paths, "every request reached the origin exactly once");
  } finally {
    await env.close();
  }
});

test("worker-build's exported functions cannot be called through a service binding", async () => {
  const origin = echoOrigin();
  const server = await startServer(origin.handler);
  const mf = new Miniflare({
    workers: [
      {
        name: "caller",
        modules: true,
        compatibilityDate: "2026-04-01",
        serviceBindings: { EDGE: "prewarm" },
        script: `export default {
          async fetch(request, env) {
            const tried = [];
            for (const name of ["prewarm_abandon", "prewarm_complete", "prewarm_prepare"]) {
              try { await env.EDGE[name](1); tried.push(name + ": called"); }
              catch (error) { tried.push(name + ": refused"); }
            }
            const through = await env.EDGE.fetch("http://edge.test/via-binding");
            tried.push("fetch: " + through.status);
            return new Response(tried.join("\\n"));
          }
        }`,
      },
      { name: "prewarm", ...workerOptions({ ORIGIN_URL: server.url, ...SECRETS }), kvNamespaces: ["PREWARM_MODEL"] },
    ],
  });
  try {
    const res = await mf.dispatchFetch("http://caller.test/");
    const lines = (await res.text()).split("\n");
    assert.deepEqual(lines, [
      "prewarm_abandon: refused",
      "prewarm_complete: refused",
      "prewarm_prepare: refused",
      "fetch: 200",
    ]);
  } finally {
    await mf.dispose();
    await server.close();
  }
});
