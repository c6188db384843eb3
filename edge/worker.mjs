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
import { forwardToOrigin, withCookies } from "./js/hot_path.js";

const pending = new Set();

addEventListener("error", (event) => {
  if (event.error instanceof WebAssembly.RuntimeError) {
    for (const fail of pending) fail(event.error);
  }
});

const rustFetch = RustWorker.prototype.fetch;
const prepare = RustWorker.prototype.prewarm_prepare;
const complete = RustWorker.prototype.prewarm_complete;
const abandon = RustWorker.prototype.prewarm_abandon;

/** After a trap the Wasm instance is unusable: have the runtime re-instantiate it. */
function countFailure(error) {
  globalThis.__prewarm_panics = (globalThis.__prewarm_panics ?? 0) + 1;
  console.error("prewarm: passing a request through after an internal error:", String(error));
  if (error instanceof WebAssembly.RuntimeError && globalThis.__worker_init_state) {
    globalThis.__worker_init_state.criticalError = true;
  }
}

function passThrough(request, env, error) {
  countFailure(error);
  if (request.bodyUsed) {
    // The body already went to the origin once; sending it again could repeat a write.
    return new Response("prewarm: internal error after the request body was forwarded", { status: 502 });
  }
  const url = new URL(request.url);
  const origin = new URL(env.ORIGIN_URL);
  url.protocol = origin.protocol;
  url.host = origin.host;
  return fetch(new Request(url, request));
}

function asyncPath(worker, request) {
  let fail;
  const crashed = new Promise((_, reject) => {
    fail = reject;
  });
  pending.add(fail);
  const env = worker.env;
  // A terminated Wasm module throws synchronously: make that a rejection too.
  const handled = new Promise((resolve) => resolve(rustFetch.call(worker, request)));
  return Promise.race([handled, crashed])
    .catch((error) => passThrough(request, env, error))
    .finally(() => pending.delete(fail));
}

async function forwardPrepared(request, env, ctx, plan) {
  const [token, target, cookie, profile, region, model] = plan.split("\n");
  const started = Date.now();
  let response;
  try {
    response = await forwardToOrigin(request, target, cookie === "-" ? undefined : cookie.slice(1), profile, region, model);
  } catch (error) {
    try {
      abandon(Number(token));
    } catch (failure) {
      countFailure(failure);
    }
    return new Response(`origin unreachable: ${error}`, { status: 502 });
  }
  let cookies;
  try {
    cookies = complete(Number(token), response, Math.max(0, Date.now() - started), ctx);
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
