// Identify, assign, forward with tags, model loading and refresh: the built worker in workerd
// with its local KV seeded with models built by the shared crate.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  SECRETS, arrayBuffer, echoOrigin, eventually, fixtureModel, publish, setCookies, startServer, startWorker, status, zoneWithLocalHour,
} from "./harness.mjs";

const MOBILE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
const DESKTOP_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";

async function setup(extraVars = {}) {
  const origin = echoOrigin();
  const server = await startServer(origin.handler);
  const mf = await startWorker({ ORIGIN_URL: server.url, ...SECRETS, MODEL_CHECK_SECS: "0", ...extraVars });
  return { origin, server, mf, close: async () => { await mf.dispose(); await server.close(); } };
}

/** A browser: keeps prewarm's cookies between requests. */
function visitor(mf, { ua, timezone, country = "DE" }) {
  const jar = {};
  return {
    jar,
    async get(path, headers = {}) {
      const cookie = Object.entries(jar).map(([k, v]) => `${k}=${v}`).join("; ");
      const res = await mf.dispatchFetch(`http://edge.test${path}`, {
        headers: { "user-agent": ua, ...(cookie ? { cookie } : {}), ...headers },
        cf: { country, continent: "EU", timezone, clientTcpRtt: 35, colo: "FRA" },
      });
      for (const [name, { value }] of Object.entries(setCookies(res))) {
        if (name.startsWith("pw_")) jar[name] = value;
      }
      await res.arrayBuffer();
      return res;
    },
  };
}

test("first visit gets the region's default profile and both cookies", async () => {
  const env = await setup();
  try {
    const model = fixtureModel("model-v1");
    await publish(env.mf, model);
    const res = await env.mf.dispatchFetch("http://edge.test/", {
      headers: { "user-agent": DESKTOP_UA },
      cf: { country: "US", continent: "NA", timezone: "America/New_York" },
    });
    assert.equal(res.status, 200);
    const cookies = setCookies(res);
    assert.match(cookies.pw_id.value, /^[0-9a-f]{32}$/);
    assert.ok(cookies.pw_state.value.length > 60);
    for (const { line } of Object.values(cookies).filter((c) => c.line.startsWith("pw_"))) {
      assert.match(line, /Secure/);
      assert.match(line, /HttpOnly/);
      assert.match(line, /SameSite=Lax/);
      assert.match(line, /Max-Age=\d+/);
    }
    const seen = env.origin.seen[0].headers;
    assert.equal(seen["x-prewarm-profile"], String(model.default_profile));
    assert.equal(seen["x-prewarm-region"], "us");
    assert.equal(seen["x-prewarm-model"], "1");
  } finally {
    await env.close();
  }
});

test("a night-time mobile video viewer and an office-hours desktop API client get different profiles", async () => {
  const env = await setup();
  try {
    const model = fixtureModel("model-v1");
    await publish(env.mf, model);
    const viewer = visitor(env.mf, { ua: MOBILE_UA, timezone: zoneWithLocalHour(21) });
    const client = visitor(env.mf, { ua: DESKTOP_UA, timezone: zoneWithLocalHour(11) });
    for (let i = 0; i < 6; i++) {
      await viewer.get(`/watch/42/segment-${i}.ts`);
      await client.get(`/api/v1/orders?page=${i}`, { accept: "application/json" });
    }
    const tags = env.origin.seen.map((r) => r.headers["x-prewarm-profile"]);
    const viewerProfiles = tags.filter((_, i) => i % 2 === 0);
    const clientProfiles = tags.filter((_, i) => i % 2 === 1);
    // New users start on the default profile and are refined as they interact.
    assert.equal(viewerProfiles[0], String(model.default_profile));
    const label = (id) => model.profiles.find((p) => String(p.id) === id)?.label ?? id;
    const viewerLast = viewerProfiles.at(-1);
    const clientLast = clientProfiles.at(-1);
    assert.notEqual(viewerLast, clientLast, `viewer ${label(viewerLast)} vs client ${label(clientLast)}`);
    assert.match(label(viewerLast), /mobile · video/);
    // Weekday is a feature: where it is Saturday or Sunday for the client (as on a weekend
    // run), the fixture's weekend profile is the nearer one, and that is right.
    const clientZone = zoneWithLocalHour(11);
    const offsetHours = clientZone === "Etc/GMT" ? 0 : -Number(clientZone.slice("Etc/GMT".length));
    const clientDay = new Date(Date.now() + offsetHours * 3_600_000).getUTCDay();
    assert.match(label(clientLast), clientDay === 0 || clientDay === 6 ? /desktop · api|weekend/ : /desktop · api/);
    // Stable once converged: the last three requests of each agree.
    assert.equal(new Set(viewerProfiles.slice(-3)).size, 1);
    assert.equal(new Set(clientProfiles.slice(-3)).size, 1);
  } finally {
    await env.close();
  }
});

test("a crawler is tagged with the automated profile from its first request", async () => {
  const env = await setup();
  try {
    const model = fixtureModel("model-v1");
    await publish(env.mf, model);
    const automated = model.profiles.find((p) => p.role === "automated");
    assert.ok(automated, "the fixture has an automated profile");
    const crawler = visitor(env.mf, {
      ua: "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
      timezone: "Europe/Berlin",
    });
    await crawler.get("/articles/1");
    await crawler.get("/articles/2");
    const tags = env.origin.seen.map((r) => r.headers["x-prewarm-profile"]);
    assert.deepEqual(tags, [String(automated.id), String(automated.id)]);
    // A person's first request still gets the default profile.
    const person = visitor(env.mf, { ua: DESKTOP_UA, timezone: "Europe/Berlin" });
    await person.get("/articles/1");
    assert.equal(env.origin.seen.at(-1).headers["x-prewarm-profile"], String(model.default_profile));
  } finally {
    await env.close();
  }
});

test("a tampered or foreign state cookie is treated as new and the request still succeeds", async () => {
  const env = await setup();
  try {
    await publish(env.mf, fixtureModel("model-v1"));
    const user = visitor(env.mf, { ua: MOBILE_UA, timezone: "Europe/Berlin" });
    await user.get("/watch/1/a.ts");
    await user.get("/watch/1/b.ts");
    const good = user.jar.pw_state;
    const flipped = good.slice(0, 10) + (good[10] === "A" ? "B" : "A") + good.slice(11);
    const foreign = "AQEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for (const state of [flipped, foreign, "garbage!!", good.slice(0, 40)]) {
      const res = await env.mf.dispatchFetch("http://edge.test/watch/1/c.ts", {
        headers: { "user-agent": MOBILE_UA, cookie: `pw_id=${user.jar.pw_id}; pw_state=${state}` },
      });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      const fresh = setCookies(res).pw_state.value;
      assert.notEqual(fresh, state);
    }
    // A valid state copied beside another visitor's id: refused, it was signed for its own id.
    const other = visitor(env.mf, { ua: MOBILE_UA, timezone: "Europe/Berlin" });
    await other.get("/watch/2/a.ts");
    const copied = await env.mf.dispatchFetch("http://edge.test/watch/1/d.ts", {
      headers: { "user-agent": MOBILE_UA, cookie: `pw_id=${other.jar.pw_id}; pw_state=${good}` },
    });
    assert.equal(copied.status, 200);
    await copied.arrayBuffer();
    assert.notEqual(setCookies(copied).pw_state.value, good);
    const s = await status(env.mf);
    assert.equal(s.counters.states_rejected, 5);
  } finally {
    await env.close();
  }
});

test("a new pointer is picked up without restart; a corrupt blob keeps the last good model", async () => {
  const env = await setup();
  try {
    await publish(env.mf, fixtureModel("model-v1"));
    const user = visitor(env.mf, { ua: DESKTOP_UA, timezone: "Europe/Paris" });
    await user.get("/");
    assert.equal((await status(env.mf)).model.version, 1);

    await publish(env.mf, fixtureModel("model-v2"));
    await eventually(async () => {
      await user.get("/");
      return (await status(env.mf)).model.version === 2;
    });
    await user.get("/");
    assert.equal(env.origin.seen.at(-1).headers["x-prewarm-model"], "2");

    // Version 3's pointer names a blob whose bytes were corrupted in KV.
    const broken = fixtureModel("model-surge");
    const kv = await env.mf.getKVNamespace("PREWARM_MODEL");
    const euKey = broken.regions.find((r) => r.region === "eu").key;
    for (const entry of broken.entries) {
      const bytes = Buffer.from(entry.base64, "base64");
      if (entry.key === euKey) bytes[bytes.length - 5] ^= 0xff;
      await kv.put(entry.key, arrayBuffer(bytes));
    }
    const s = await eventually(async () => {
      const res = await user.get("/");
      assert.equal(res.status, 200);
      const s = await status(env.mf);
      return s.counters.decode_errors > 0 && s;
    });
    assert.equal(s.model.version, 2, "the last good model stays");
    assert.match(s.model.last_error, /hash/);
    assert.equal(env.origin.seen.at(-1).headers["x-prewarm-model"], "2");
  } finally {
    await env.close();
  }
});

test("without any model the request passes through tagged default", async () => {
  const env = await setup();
  try {
    const res = await env.mf.dispatchFetch("http://edge.test/page", { headers: { "user-agent": DESKTOP_UA } });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(env.origin.seen[0].headers["x-prewarm-profile"], "default");
    const s = await status(env.mf);
    assert.equal(s.model.version, null);
    assert.equal(s.counters.requests_without_model, 1);
    assert.match(s.model.last_error, /missing/);
  } finally {
    await env.close();
  }
});

test("status and health require the status token when one is set", async () => {
  const env = await setup({ STATUS_TOKEN: "ops-token" });
  try {
    for (const path of ["status", "health"]) {
      const denied = await env.mf.dispatchFetch(`http://edge.test/__prewarm/${path}`);
      assert.equal(denied.status, 401);
      await denied.arrayBuffer();
      const wrong = await env.mf.dispatchFetch(`http://edge.test/__prewarm/${path}`, { headers: { authorization: "Bearer nope" } });
      assert.equal(wrong.status, 401);
      await wrong.arrayBuffer();
    }
    const s = await status(env.mf, "ops-token");
    assert.equal(s.counters.requests, 0);
  } finally {
    await env.close();
  }
});

test("a panic inside prewarm code passes the request through and the isolate recovers", async () => {
  const env = await setup({ PREWARM_FAULT_INJECTION: "1" });
  try {
    await publish(env.mf, fixtureModel("model-v1"));
    const ok = await env.mf.dispatchFetch("http://edge.test/before", { headers: { "user-agent": DESKTOP_UA } });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    const res = await env.mf.dispatchFetch("http://edge.test/boom", {
      headers: { "user-agent": DESKTOP_UA, "x-prewarm-fault": "panic" },
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(env.origin.seen.at(-1).url, "/boom");
    const after = await env.mf.dispatchFetch("http://edge.test/after", { headers: { "user-agent": DESKTOP_UA } });
    assert.equal(after.status, 200);
    await after.arrayBuffer();
    assert.ok(env.origin.seen.at(-1).headers["x-prewarm-profile"], "prewarm works again after the panic");
    const s = await status(env.mf);
    assert.equal(s.counters.panics_caught, 1);
  } finally {
    await env.close();
  }
});

test("a panic in the asynchronous handler (after a model load) passes the request through too", async () => {
  const env = await setup({ PREWARM_FAULT_INJECTION: "1" });
  try {
    await publish(env.mf, fixtureModel("model-v1"));
    // The isolate's first request must load the model from KV: the asynchronous handler serves
    // it, and the panic traps in a microtask, where only the global error event tells.
    const res = await env.mf.dispatchFetch("http://edge.test/boom-async", {
      headers: { "user-agent": DESKTOP_UA, "x-prewarm-fault": "panic-after-load" },
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(env.origin.seen.at(-1).url, "/boom-async");
    assert.equal(env.origin.seen.at(-1).headers["x-prewarm-profile"], undefined, "passed through untouched");
    const after = await env.mf.dispatchFetch("http://edge.test/after", { headers: { "user-agent": DESKTOP_UA } });
    assert.equal(after.status, 200);
    await after.arrayBuffer();
    assert.ok(env.origin.seen.at(-1).headers["x-prewarm-profile"], "prewarm works again after the panic");
    assert.equal((await status(env.mf)).counters.panics_caught, 1);
  } finally {
    await env.close();
  }
});

test("a publish cut off between its blobs and its pointer leaves the previous model serving", async () => {
  const env = await setup();
  try {
    await publish(env.mf, fixtureModel("model-v1"));
    const user = visitor(env.mf, { ua: DESKTOP_UA, timezone: "Europe/Paris" });
    await user.get("/");
    assert.equal((await status(env.mf)).model.version, 1);
    // Version 2's blobs land, then the publisher dies: its pointer (`current`) is never written.
    const kv = await env.mf.getKVNamespace("PREWARM_MODEL");
    const v2 = fixtureModel("model-v2");
    const blobs = v2.entries.filter((e) => e.key !== "current");
    assert.ok(blobs.length > 0 && blobs.length < v2.entries.length);
    for (const entry of blobs) await kv.put(entry.key, arrayBuffer(Buffer.from(entry.base64, "base64")));
    // The worker re-reads the pointer on every request here (MODEL_CHECK_SECS=0).
    for (let i = 0; i < 10; i++) {
      const res = await user.get(`/?after-cut=${i}`);
      assert.equal(res.status, 200);
      assert.equal(env.origin.seen.at(-1).headers["x-prewarm-model"], "1");
    }
    const s = await status(env.mf);
    assert.equal(s.model.version, 1, "never a mix: the old pointer names only old blobs");
    assert.equal(s.counters.decode_errors, 0);
    // The publisher's retry writes the pointer: version 2 arrives whole.
    await publish(env.mf, v2);
    await eventually(async () => {
      await user.get("/");
      return (await status(env.mf)).model.version === 2;
    });
  } finally {
    await env.close();
  }
});
