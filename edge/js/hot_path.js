// The per-request work that only moves JavaScript objects around, kept on this side of the Wasm
// boundary. Each crossing, and each string copied across it, costs more than the Rust work it
// serves: reading the request's facts, copying and editing headers one call at a time and
// rebuilding the response through workers-rs took a quarter of a plain worker's throughput.
// Rust still decides everything (identity, profile, tags, cookies); these functions only carry
// its decisions out, one call each. Imported by src/forward.rs through wasm-bindgen.

const PROFILE_HEADER = "x-prewarm-profile";
const REGION_HEADER = "x-prewarm-region";
const MODEL_HEADER = "x-prewarm-model";

// Never forwarded: hop-by-hop headers, client addresses (prewarm forwards no identity), and
// anything a client sends that claims to be a prewarm tag or a fault trigger.
const DROPPED_HEADERS = [
  "host",
  "connection",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
  "cf-connecting-ip",
  "cf-connecting-ipv6",
  "x-forwarded-for",
  "x-real-ip",
  "true-client-ip",
  "forwarded",
  PROFILE_HEADER,
  REGION_HEADER,
  MODEL_HEADER,
  "x-prewarm-fault",
];

const text = (value) => (typeof value === "string" ? value : typeof value === "number" ? String(value) : "");

// The records crossing the Wasm boundary: one string of "\n"-separated fields each (no field
// can hold a newline: header values, URLs and tags cannot), in the order these lists give.
// Each list has a twin `FIELDS` in src/host.rs; Rust's tests pin the two lists to each other
// and tests/edge/records.test.mjs pins each function here to its list. Absent fields are empty.
export const REQUEST_FACTS = ["url", "cookie", "accept", "user_agent", "fault"];
export const CF_FACTS = ["colo", "country", "continent", "timezone", "rtt_ms"];
export const RESPONSE_FACTS = ["content_type", "length"];
export const PLAN = ["token", "target", "profile", "region", "model"];

/** What Rust needs from the request (`REQUEST_FACTS`), fetched in one crossing. */
export function requestFacts(request) {
  const headers = request.headers;
  return [
    request.url,
    headers.get("cookie") ?? "",
    headers.get("accept") ?? "",
    headers.get("user-agent") ?? "",
    headers.get("x-prewarm-fault") ?? "",
  ].join("\n");
}

/**
 * The request's `cf` facts (`CF_FACTS`; `rtt_ms` is `clientTcpRtt`). Separate from `requestFacts` because the runtime parses the whole `cf` object from JSON on
 * first access: the edge reads it only when the visitor's state has no recent copy.
 */
export function requestCf(request) {
  const cf = request.cf ?? {};
  return [text(cf.colo), text(cf.country), text(cf.continent), text(cf.timezone), text(cf.clientTcpRtt)].join("\n");
}

// prewarm's own cookies (`edge/src/identify.rs`: ID_COOKIE, STATE_COOKIE): never forwarded.
export const OWN_COOKIES = ["pw_id", "pw_state"];

/** The Cookie header without prewarm's cookies; undefined when nothing else is left. */
export function strippedCookie(header) {
  if (!header) return undefined;
  const kept = [];
  for (const part of header.split(";")) {
    const pair = part.trim();
    if (!pair) continue;
    const eq = pair.indexOf("=");
    const name = eq < 0 ? pair : pair.slice(0, eq);
    if (!OWN_COOKIES.includes(name)) kept.push(pair);
  }
  return kept.length ? kept.join("; ") : undefined;
}

// The origin calls of requests on the asynchronous path (Rust's `fetch` handler), so that a
// Wasm trap after forwarding returns the origin's answer instead of sending the request again.
// A map, not a property on the request: an expando on the runtime's Request object keeps the
// request, its promise and the response alive until a full collection, and those collections
// were the steady-load latency tail (edge/bench/throughput.mjs). Kept on `globalThis` under a
// registered symbol because this module is bundled twice, into the Rust glue and into worker.mjs.
const ORIGIN_CALLS = Symbol.for("prewarm.originCalls");
const originCalls = (globalThis[ORIGIN_CALLS] ??= new Map());

/**
 * Sends the request on to `target` with the same method, headers and streamed body, minus the
 * dropped headers and prewarm's cookies — the one stripping rule of every path: prepared,
 * asynchronous, and the pass-through after a trap. The tags are set when `profile` is given.
 * Redirects go back to the client as they are.
 *
 * The outgoing request is the runtime's copy of the incoming one (`new Request(target,
 * request)`), edited in place: building it from a URL and an init of copied headers gave a
 * worker doing nothing else a steady-load p99 1.6× a plain pass-through's (17.2 ms against
 * 10.8; the copy edited in place: 10.3). It costs throughput at saturation: docs/benchmarks.md.
 */
export function forwardToOrigin(request, target, profile, region, model) {
  let outgoing = new Request(target, request);
  // An incoming request in the Workers runtime is already `manual`; elsewhere, make it so.
  if (outgoing.redirect !== "manual") outgoing = new Request(outgoing, { redirect: "manual" });
  const headers = outgoing.headers;
  for (const name of DROPPED_HEADERS) headers.delete(name);
  const cookie = strippedCookie(headers.get("cookie"));
  if (cookie === undefined) headers.delete("cookie");
  else headers.set("cookie", cookie);
  if (profile !== undefined) {
    headers.set(PROFILE_HEADER, profile);
    headers.set(REGION_HEADER, region);
    headers.set(MODEL_HEADER, model);
  }
  return fetch(outgoing);
}

/**
 * `forwardToOrigin`, remembering the call until `forgetOriginCall`: what Rust's asynchronous
 * path calls (worker.mjs forgets it when the request settles).
 */
export function forwardRemembered(request, target, profile, region, model) {
  const call = forwardToOrigin(request, target, profile, region, model);
  originCalls.set(request, call);
  return call;
}

/** The origin call `forwardRemembered` made for this request, if it made one. */
export function originCall(request) {
  return originCalls.get(request);
}

/** Drops what `forwardRemembered` kept for this request. */
export function forgetOriginCall(request) {
  originCalls.delete(request);
}

/** The origin URL for a request: the origin's scheme and authority, the request's path and query. */
export function originTarget(requestUrl, originUrl) {
  const url = new URL(requestUrl);
  const origin = new URL(originUrl);
  return `${origin.protocol}//${origin.host}${url.pathname}${url.search}`;
}

/**
 * A new visitor's id: 128 bits from the runtime's CSPRNG, as 32 hex digits. Throws (and the
 * request is passed through untouched) rather than ever returning a predictable id.
 */
export function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let hex = "";
  for (const b of bytes) hex += (b < 16 ? "0" : "") + b.toString(16);
  return hex;
}

/** The origin response's content type and length (`RESPONSE_FACTS`). */
export function responseFacts(response) {
  const headers = response.headers;
  return `${headers.get("content-type") ?? ""}\n${headers.get("content-length") ?? ""}`;
}

/**
 * What `prewarm_prepare` returned (`PLAN`), for edge/worker.mjs: the token that completes or
 * abandons the request, where to forward it and its tags.
 */
export function decodePlan(plan) {
  const [token, target, profile, region, model] = plan.split("\n");
  return { token: Number(token), target, profile, region, model };
}

/**
 * The origin's response with `cookies` (one Set-Cookie value per field) appended as Set-Cookie headers. Fetched
 * responses have immutable headers, so they are copied; the body keeps streaming.
 */
export function withCookies(response, cookies) {
  const headers = new Headers(response.headers);
  for (const cookie of cookies.split("\n")) if (cookie) headers.append("set-cookie", cookie);
  const init = { status: response.status, statusText: response.statusText, headers };
  if (response.webSocket) init.webSocket = response.webSocket;
  return new Response(response.body, init);
}
