// The worker runs in the real Workers runtime and passes requests through to the origin.
import { test } from "node:test";
import assert from "node:assert/strict";
import { echoOrigin, startServer, startWorker } from "./harness.mjs";

test("a request reaches the origin with its method, path, query and headers", async () => {
  const origin = echoOrigin();
  const server = await startServer(origin.handler);
  const mf = await startWorker({ ORIGIN_URL: server.url });
  try {
    const res = await mf.dispatchFetch("http://edge.test/articles/1?lang=en", {
      method: "GET",
      headers: { "x-custom": "kept", "user-agent": "Mozilla/5.0 (X11; Linux x86_64)" },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-origin"), "echo");
    const echoed = await res.json();
    assert.equal(echoed.method, "GET");
    assert.equal(echoed.url, "/articles/1?lang=en");
    assert.equal(echoed.headers["x-custom"], "kept");
    assert.equal(origin.seen.length, 1);
  } finally {
    await mf.dispose();
    await server.close();
  }
});
