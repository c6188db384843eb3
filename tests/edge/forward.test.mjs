// edge/js/hot_path.js's forwarding, without a worker build: what it sends, and that it leaves
// the runtime's Request object as it found it. A property set on the request (as the origin
// call once was) kept the request, its promise and the response alive until a full collection:
// isolate-wide stalls of 20–60 ms under steady load (docs/benchmarks.md).
import assert from "node:assert/strict";
import { test } from "node:test";
import { forgetOriginCall, forwardRemembered, forwardToOrigin, originCall } from "../../edge/js/hot_path.js";

function withFetch(body) {
  const sent = [];
  const original = globalThis.fetch;
  globalThis.fetch = (outgoing) => {
    sent.push(outgoing);
    return Promise.resolve(new Response("origin"));
  };
  try {
    return body(sent);
  } finally {
    globalThis.fetch = original;
  }
}

const visitorRequest = () =>
  new Request("https://edge.test/a?b=1", {
    headers: { cookie: "pw_id=abc; theme=dark; pw_state=xyz", "x-forwarded-for": "192.0.2.1", "x-prewarm-profile": "9" },
  });

test("forwardToOrigin strips prewarm's cookies and spoofed tags, and adds nothing to the request", () =>
  withFetch((sent) => {
    const request = visitorRequest();
    const keys = Reflect.ownKeys(request);
    forwardToOrigin(request, "https://origin.test/a?b=1", "2", "eu", "7");
    assert.deepEqual(Reflect.ownKeys(request), keys, "the request carries no new property");
    assert.equal(originCall(request), undefined, "the prepared path remembers nothing");
    const outgoing = sent[0];
    assert.equal(outgoing.url, "https://origin.test/a?b=1");
    assert.equal(outgoing.headers.get("cookie"), "theme=dark");
    assert.equal(outgoing.headers.get("x-forwarded-for"), null);
    assert.equal(outgoing.headers.get("x-prewarm-profile"), "2");
    assert.equal(outgoing.redirect, "manual");
    assert.equal(request.headers.get("x-forwarded-for"), "192.0.2.1", "the incoming request is left as it came");
  }));

test("forwardRemembered keeps the call apart from the request until it is forgotten", () =>
  withFetch(() => {
    const request = visitorRequest();
    const keys = Reflect.ownKeys(request);
    const call = forwardRemembered(request, "https://origin.test/a");
    assert.deepEqual(Reflect.ownKeys(request), keys);
    assert.equal(originCall(request), call);
    forgetOriginCall(request);
    assert.equal(originCall(request), undefined);
  }));
