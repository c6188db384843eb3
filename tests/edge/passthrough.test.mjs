// The worker runs in the real Workers runtime and passes requests through to the origin.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SECRETS, echoOrigin, fixtureModel, publish, startServer, startWorker } from "./harness.mjs";

test("a request reaches the origin with its method, path, query, headers and body", async () => {
  const origin = echoOrigin();
  const server = await startServer(origin.handler);
  const mf = await startWorker({ ORIGIN_URL: server.url, ...SECRETS });
  try {
    const res = await mf.dispatchFetch("http://edge.test/articles/1?lang=en", {
      method: "POST",
      body: "hello origin",
      headers: { "x-custom": "kept", "user-agent": "Mozilla/5.0 (X11; Linux x86_64)", cookie: "theme=dark" },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-origin"), "echo");
    await res.arrayBuffer();
    const [seen] = origin.seen;
    assert.equal(seen.method, "POST");
    assert.equal(seen.url, "/articles/1?lang=en");
    assert.equal(seen.body, "hello origin");
    assert.equal(seen.headers["x-custom"], "kept");
    assert.equal(seen.headers.cookie, "theme=dark", "the app's own cookies reach the origin");
    // The origin's own Set-Cookie survives next to prewarm's.
    assert.ok(res.headers.getSetCookie().some((c) => c.startsWith("app_session=")));
  } finally {
    await mf.dispose();
    await server.close();
  }
});

test("without its secrets the worker still passes requests through and says why", async () => {
  const origin = echoOrigin();
  const server = await startServer(origin.handler);
  const mf = await startWorker({ ORIGIN_URL: server.url });
  try {
    const res = await mf.dispatchFetch("http://edge.test/page");
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(origin.seen.length, 1);
    const health = await mf.dispatchFetch("http://edge.test/__prewarm/health");
    assert.equal(health.status, 503);
    assert.match((await health.json()).config_error, /PREWARM_SALT|COOKIE_SECRET/);
  } finally {
    await mf.dispose();
    await server.close();
  }
});

test("weak secrets, a reused cookie key id or a plain-http trainer fail closed to pass-through and say why", async () => {
  const origin = echoOrigin();
  const server = await startServer(origin.handler);
  const cases = [
    [{ COOKIE_SECRET: "short" }, /COOKIE_SECRET must be at least 16 bytes/],
    [{ PREWARM_SALT: "salt" }, /PREWARM_SALT must be at least 16 bytes/],
    [{ TRAINER_URL: "http://127.0.0.1:9", SIGNAL_KEY: "too-short" }, /SIGNAL_KEY must be at least 16 bytes/],
    [{ TRAINER_URL: "http://trainer.example.com" }, /TRAINER_URL.*must be https/],
    [
      { COOKIE_KEY_ID: "3", COOKIE_KEY_ID_PREVIOUS: "3", COOKIE_SECRET_PREVIOUS: "previous-cookie-secret" },
      /COOKIE_KEY_ID_PREVIOUS equals COOKIE_KEY_ID/,
    ],
  ];
  try {
    for (const [overrides, reason] of cases) {
      const mf = await startWorker({ ORIGIN_URL: server.url, ...SECRETS, ...overrides });
      try {
        const res = await mf.dispatchFetch("http://edge.test/page");
        assert.equal(res.status, 200, JSON.stringify(overrides));
        assert.ok(!res.headers.getSetCookie().some((c) => c.startsWith("pw_")), "no prewarm cookie when misconfigured");
        await res.arrayBuffer();
        const health = await mf.dispatchFetch("http://edge.test/__prewarm/health");
        assert.equal(health.status, 503);
        assert.match((await health.json()).config_error, reason);
      } finally {
        await mf.dispose();
      }
    }
    // A trainer on loopback may be plain http (wrangler dev, tests).
    const mf = await startWorker({ ORIGIN_URL: server.url, ...SECRETS, TRAINER_URL: "http://localhost:9" });
    try {
      const health = await mf.dispatchFetch("http://edge.test/__prewarm/health");
      assert.equal(health.status, 200, await health.text());
    } finally {
      await mf.dispose();
    }
  } finally {
    await server.close();
  }
});

test("an origin's redirect goes back to the client as it is, on the first request and on the prepared path", async () => {
  const seen = [];
  const server = await startServer((req) => {
    seen.push(req.url);
    return req.url === "/moved" ? { status: 302, headers: { location: "/elsewhere" }, body: "" } : { status: 200, body: "here" };
  });
  const mf = await startWorker({ ORIGIN_URL: server.url, ...SECRETS });
  await publish(mf, fixtureModel("model-v1"));
  try {
    for (const attempt of ["first", "prepared"]) {
      const res = await mf.dispatchFetch("http://edge.test/moved", {
        redirect: "manual",
        headers: { "user-agent": "Mozilla/5.0 (X11; Linux x86_64)" },
      });
      assert.equal(res.status, 302, attempt);
      assert.equal(res.headers.get("location"), "/elsewhere", attempt);
      await res.arrayBuffer();
    }
    assert.deepEqual(seen, ["/moved", "/moved"], "the worker never followed the redirect itself");
  } finally {
    await mf.dispose();
    await server.close();
  }
});
