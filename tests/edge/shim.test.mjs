// edge/worker.mjs leans on three things worker-build's generated shim (edge/build/index.js) does
// today; this test fails, naming the one that changed, when a worker-build upgrade changes them,
// instead of the worker silently losing its trap recovery or its synchronous path.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";

const SHIM = new URL("../../edge/build/index.js", import.meta.url);

test("worker-build's shim still looks the way edge/worker.mjs assumes", () => {
  assert.ok(existsSync(SHIM), "edge/build/index.js is missing: build the worker first (cargo xtask build-worker)");
  const shim = readFileSync(SHIM, "utf8");
  // 1. The exported Rust functions land on the entry class's prototype, where worker.mjs
  //    captures and then deletes them.
  for (const name of ["prewarm_prepare", "prewarm_complete", "prewarm_abandon"]) {
    assert.match(shim, new RegExp(`\\.prototype\\.${name}\\s*=`), `the shim no longer puts ${name} on the prototype`);
  }
  // 2. The entry class has a prototype `fetch` that worker.mjs wraps in place.
  assert.match(shim, /\.prototype\.fetch\s*=\s*function/, "the shim no longer defines the entry's fetch on its prototype");
  // 3. The shim's private re-instantiation flag, which worker.mjs sets after a trap it caught
  //    (one the shim's own error listener never sees).
  assert.match(
    shim,
    /globalThis\.__worker_init_state\s*=\s*\{\s*criticalError\s*:/,
    "the shim no longer keeps globalThis.__worker_init_state.criticalError",
  );
  // The default export is the entry class (through the shim's Proxy).
  assert.match(shim, /as default\s*\}/, "the shim no longer exports a default entry");
});
