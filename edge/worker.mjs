// The worker's entry point (wrangler.toml `main`). It runs the Rust worker built into ./build
// and keeps one promise of the product: prewarm never fails a user's request. If prewarm code
// panics, the request is passed through to the origin untouched and the panic is counted; the
// Rust runtime re-instantiates its Wasm module on the next request.
//
// Most requests take the synchronous path: Rust prepares (identity, state, profile, tags) in one
// call, this file forwards, Rust completes (state, counts, signals) in another; no Rust future
// is created, which costs more than the work itself. Requests Rust cannot prepare without
// waiting (the isolate's first, a region's first model load, status endpoints, no
// configuration) take the Rust `fetch` handler.
//
// A panic inside the async handler traps in a microtask: its promise then never settles, and
// only the global "error" event tells. So such a request races its handler against that event.
// The Rust class's `fetch` is wrapped in place (a subclass of its Proxy measured slower).
import RustWorker from "./build/index.js";
import { decodePlan, forgetOriginCall, forwardToOrigin, originCall, originTarget, withCookies } from "./js/hot_path.js";

// The asynchronous requests in flight, each with the function that abandons its Rust future.
const pending = new Set();

/**
 * A trap kills the Wasm instance: no Rust future of it will ever complete, whichever request
 * trapped (one awaiting KV would hang until the runtime cancels it). Every request in flight
 * is then served without Rust (`passThrough`).
 */
function failPending(error) {
  for (const fail of [...pending]) fail(error);
}

addEventListener("error", (event) => {
  if (event.error instanceof WebAssembly.RuntimeError) failPending(event.error);
});

// worker-build puts every exported Rust function on the entry class's prototype, where a
// service binding could call it (JS RPC) with an env of its own. Captured here, then removed:
// only this file calls them, always with the runtime's env.
const rustFetch = RustWorker.prototype.fetch;
const prepare = RustWorker.prototype.prewarm_prepare;
const complete = RustWorker.prototype.prewarm_complete;
const abandon = RustWorker.prototype.prewarm_abandon;
for (const name of ["prewarm_prepare", "prewarm_complete", "prewarm_abandon"]) {
  if (typeof RustWorker.prototype[name] !== "function") {
    // The shim no longer looks as this file assumes: fail loudly at load, not per request.
    throw new Error(`edge/worker.mjs: worker-build's shim has no ${name} on the entry prototype`);
  }
  delete RustWorker.prototype[name];
}

// Failures already counted: one trap fails every request in flight, and counts once.
const counted = new WeakSet();

/** After a trap the Wasm instance is unusable: have the runtime re-instantiate it. */
function countFailure(error) {
  if (error !== null && typeof error === "object") {
    if (counted.has(error)) return;
    counted.add(error);
  }
  globalThis.__prewarm_panics = (globalThis.__prewarm_panics ?? 0) + 1;
  console.error("prewarm: passing a request through after an internal error:", String(error));
  if (error instanceof WebAssembly.RuntimeError) {
    lastTrap = error;
    if (globalThis.__worker_init_state) globalThis.__worker_init_state.criticalError = true;
    failPending(error);
  }
}

/**
 * Serves a request prewarm failed on. If it was already forwarded, the origin's answer is
 * returned as it came (a request is never sent twice: a POST must not repeat); otherwise it
 * is forwarded now, stripped by the same rule as every forwarded request.
 */
function passThrough(request, env, error) {
  countFailure(error);
  const call = originCall(request);
  if (call !== undefined) {
    return call.then(
      (response) =>
        response.bodyUsed
          ? new Response("prewarm: internal error after the origin's answer was read", { status: 502 })
          : response,
      (failure) => new Response(`origin unreachable: ${failure}`, { status: 502 }),
    );
  }
  if (request.bodyUsed) {
    return new Response("prewarm: internal error after the request body was read", { status: 502 });
  }
  return forwardToOrigin(request, originTarget(request.url, env.ORIGIN_URL));
}

// The last trap: a request on the asynchronous path that started before it has no future.
let lastTrap;

function asyncPath(worker, request) {
  const trapBefore = lastTrap;
  let fail;
  let watch;
  const crashed = new Promise((_, reject) => {
    fail = reject;
    // A rejection from the trapping request's context may come too late: once this request's
    // own I/O is done, the runtime judges it hung and cancels it. Watching from its own context
    // (a timer is pending work) lets it pass through instead.
    watch = setInterval(() => {
      if (lastTrap !== trapBefore) reject(lastTrap);
    }, 20);
  });
  pending.add(fail);
  const env = worker.env;
  // A terminated Wasm module throws synchronously: make that a rejection too.
  const handled = new Promise((resolve) => resolve(rustFetch.call(worker, request)));
  return Promise.race([handled, crashed])
    .catch((error) => passThrough(request, env, error))
    .finally(() => {
      pending.delete(fail);
      clearInterval(watch);
      forgetOriginCall(request);
    });
}

async function forwardPrepared(request, env, ctx, plan) {
  const { token, target, profile, region, model } = decodePlan(plan);
  const started = Date.now();
  let response;
  try {
    response = await forwardToOrigin(request, target, profile, region, model);
  } catch (error) {
    try {
      abandon(token);
    } catch (failure) {
      countFailure(failure);
    }
    return new Response(`origin unreachable: ${error}`, { status: 502 });
  }
  let cookies;
  try {
    cookies = complete(token, response, Math.max(0, Date.now() - started), ctx);
  } catch (error) {
    // The origin has answered: its response goes back as it came, without prewarm's cookies.
    countFailure(error);
    return response;
  }
  return withCookies(response, cookies);
}

RustWorker.prototype.fetch = function (request) {
  const { env, ctx } = this;
  let plan;
  try {
    plan = prepare(request, env, ctx);
  } catch (error) {
    return Promise.resolve(passThrough(request, env, error));
  }
  return plan === undefined ? asyncPath(this, request) : forwardPrepared(request, env, ctx, plan);
};

export default RustWorker;
