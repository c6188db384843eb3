// The records edge/js/hot_path.js writes and reads across the Wasm boundary, each checked
// against its field list: every field is given its own name as value and must come out at
// its list's position. src/host.rs's tests pin the same lists to the Rust codecs, so the two
// sides cannot drift apart. Runs without a worker build.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  CF_FACTS,
  PLAN,
  REQUEST_FACTS,
  RESPONSE_FACTS,
  decodePlan,
  requestCf,
  requestFacts,
  responseFacts,
} from "../../edge/js/hot_path.js";

/** A headers object answering `get` from a name → value map. */
const headers = (values) => ({ get: (name) => values[name] ?? null });

test("requestFacts writes REQUEST_FACTS in order", () => {
  const request = {
    url: "url",
    headers: headers({ cookie: "cookie", accept: "accept", "user-agent": "user_agent", "x-prewarm-fault": "fault" }),
  };
  assert.deepEqual(requestFacts(request).split("\n"), REQUEST_FACTS);
  // Absent headers are empty fields, never a shifted record.
  assert.deepEqual(requestFacts({ url: "u", headers: headers({}) }).split("\n"), ["u", "", "", "", ""]);
});

test("requestCf writes CF_FACTS in order", () => {
  const cf = { colo: "colo", country: "country", continent: "continent", timezone: "timezone", clientTcpRtt: "rtt_ms" };
  assert.deepEqual(requestCf({ cf }).split("\n"), CF_FACTS);
  assert.deepEqual(requestCf({ cf: { clientTcpRtt: 12 } }).split("\n"), ["", "", "", "", "12"]);
  assert.equal(requestCf({}).split("\n").length, CF_FACTS.length);
});

test("responseFacts writes RESPONSE_FACTS in order", () => {
  const response = { headers: headers({ "content-type": "content_type", "content-length": "length" }) };
  assert.deepEqual(responseFacts(response).split("\n"), RESPONSE_FACTS);
});

test("decodePlan reads PLAN in order", () => {
  const written = PLAN.map((field) => (field === "token" ? "7" : field)).join("\n");
  const plan = decodePlan(written);
  assert.deepEqual(Object.keys(plan), PLAN);
  for (const field of PLAN) assert.equal(plan[field], field === "token" ? 7 : field);
});
