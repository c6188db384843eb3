// The worker's entry point (wrangler.toml `main`). It runs the Rust worker built into ./build
// and keeps one promise of the product: prewarm never fails a user's request. If prewarm code
// panics, the request is passed through to the origin untouched and the panic is counted; the
// Rust runtime re-instantiates its Wasm module on the next request.
//
// A panic inside an async Rust handler traps in a microtask: the handler's promise then never
// settles, and only the global "error" event tells. So each request races its handler against
// that event. The Rust class's `fetch` is wrapped in place (a subclass of its Proxy measured
// slower in `cargo xtask bench`).
import RustWorker from "./build/index.js";

const pending = new Set();

addEventListener("error", (event) => {
  if (event.error instanceof WebAssembly.RuntimeError) {
    for (const fail of pending) fail(event.error);
  }
});

const rustFetch = RustWorker.prototype.fetch;

RustWorker.prototype.fetch = function (request) {
  let fail;
  const crashed = new Promise((_, reject) => {
    fail = reject;
  });
  pending.add(fail);
  const env = this.env;
  // A terminated Wasm module throws synchronously: make that a rejection too.
  const handled = new Promise((resolve) => resolve(rustFetch.call(this, request)));
  return Promise.race([handled, crashed])
    .catch((error) => {
      globalThis.__prewarm_panics = (globalThis.__prewarm_panics ?? 0) + 1;
      console.error("prewarm: passing a request through after an internal error:", String(error));
      if (request.bodyUsed) {
        // The body already went to the origin once; sending it again could repeat a write.
        return new Response("prewarm: internal error after the request body was forwarded", { status: 502 });
      }
      const url = new URL(request.url);
      const origin = new URL(env.ORIGIN_URL);
      url.protocol = origin.protocol;
      url.host = origin.host;
      return fetch(new Request(url, request));
    })
    .finally(() => pending.delete(fail));
};

export default RustWorker;
