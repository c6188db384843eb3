// Requests per second and latency percentiles (p50, p99, p99.9) through the prewarm worker vs a
// plain pass-through worker, each in a local workerd (Miniflare) of its own, same origin, same
// load generator (wrk), same concurrency, in alternating paired rounds. Run through
// `cargo xtask bench` (it builds the worker and writes the model fixtures first).
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Miniflare } from "miniflare";
import { SECRETS, fixtureModel, publish, startServer } from "../../tests/edge/harness.mjs";

const DURATION = process.env.BENCH_SECONDS ?? "4";
const CONNECTIONS = process.env.BENCH_CONNECTIONS ?? "16";
const THREADS = process.env.BENCH_THREADS ?? "2";
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? "7");

const PLAIN_PASS_THROUGH = `export default {
  fetch(request, env) {
    const url = new URL(request.url);
    const origin = new URL(env.ORIGIN_URL);
    url.protocol = origin.protocol;
    url.host = origin.host;
    return fetch(new Request(url, request));
  },
};`;

const page = Buffer.from("<!doctype html><title>origin</title>" + "x".repeat(2000));
const origin = await startServer(() => ({ status: 200, headers: { "content-type": "text/html" }, body: page }));
const trainer = await startServer(() => ({ status: 202, body: "{}" }));

const common = {
  modules: true,
  host: "127.0.0.1",
  port: 0,
  compatibilityDate: "2026-04-01",
  // BENCH_EXTRA: more worker variables as JSON, for experiments (e.g. '{"SIGNAL_FLUSH_SECS":"100000"}').
  bindings: { ORIGIN_URL: origin.url, TRAINER_URL: trainer.url, ...SECRETS, ...JSON.parse(process.env.BENCH_EXTRA ?? "{}") },
};
const prewarmOptions = {
  ...common,
  scriptPath: process.env.BENCH_SCRIPT ?? "edge/worker.mjs",
  modulesRules: [
    { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
    { type: "CompiledWasm", include: ["**/*.wasm"] },
  ],
  kvNamespaces: ["PREWARM_MODEL"],
};
const plainOptions = { ...common, script: PLAIN_PASS_THROUGH };

// The local workerd's memory grows with every request it serves, whatever the worker (one
// returning `new Response("ok")`: 89 MB to 162 MB over 8 runs of 4 s), and its tail with it (a
// plain pass-through's p99 rose from 8 to ~30 ms over ten runs): figures late in a long run
// would be about the runtime's age, not the worker. So each paired round starts both workers
// fresh, in processes of their own, and warms each up for the same time before measuring
// (BENCH_FRESH=0: one pair for the whole run, as before).
const FRESH = process.env.BENCH_FRESH !== "0";
const WARM_UP_SECONDS = process.env.BENCH_WARM_UP_SECONDS ?? "1";
async function startPair() {
  const prewarm = new Miniflare(prewarmOptions);
  const plain = new Miniflare(plainOptions);
  await publish(prewarm, fixtureModel("model-v1"));
  const urls = { prewarm: String(await prewarm.ready), plain: String(await plain.ready) };
  return { urls, dispose: () => Promise.all([prewarm.dispose(), plain.dispose()]) };
}
let pair = await startPair();
const urls = pair.urls;

// Visitors as a site sees them: varied User-Agents (desktop, mobile, tablet, bots), and a pool
// of returning visitors whose cookies come from real requests through the worker (several each,
// so their states have history), so the user hash, the UA cache and the state's refresh of
// `request.cf` run at their real rates rather than on one visitor's warm path. A visitor's
// cookies stay as prepared during a run (wrk cannot tell which connection an answer was for),
// which costs the worker the same verify, update and re-sign as an advancing cookie.
const USER_AGENTS = [
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 Edg/131.0",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
  "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0 Mobile Safari/537.36",
  "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
  "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
  "curl/8.5.0",
  "python-requests/2.32.3",
];
const POOL_SIZE = Number(process.env.BENCH_VISITORS ?? "1000");
const VISITS_EACH = 3;
const pool = [];
for (let i = 0; i < POOL_SIZE; i++) {
  const userAgent = USER_AGENTS[i % USER_AGENTS.length];
  let cookie = "";
  for (let visit = 0; visit < VISITS_EACH; visit++) {
    const headers = { "user-agent": userAgent, ...(cookie ? { cookie } : {}) };
    const answer = await fetch(new URL(`/articles/${i}`, urls.prewarm), { headers });
    await answer.arrayBuffer();
    const jar = new Map(cookie ? cookie.split("; ").map((c) => c.split(/=(.*)/s).slice(0, 2)) : []);
    for (const set of answer.headers.getSetCookie()) {
      const [name, value] = set.split(";")[0].split(/=(.*)/s);
      if (name.startsWith("pw_")) jar.set(name, value);
    }
    cookie = [...jar].map(([name, value]) => `${name}=${value}`).join("; ");
  }
  pool.push({ path: `/articles/${i}`, userAgent, cookie });
}
const cookie = pool[0].cookie;

// Asynchronous on purpose: the origin and the trainer stand-in live in this process.
const run = promisify(execFile);

// wrk's own histogram, read exactly (its --latency table stops at p99); with `think`, each
// connection waits that long after an answer before its next request, as visitors do; with
// `visitors`, each request is the next visitor's (path, User-Agent, cookies if any).
function wrkScript(thinkMs, visitors) {
  const path = join(tmpdir(), `prewarm-bench-${process.pid}-${thinkMs}ms-${visitors ? visitors.name : "fixed"}.lua`);
  const lua = [];
  if (thinkMs > 0) lua.push(`delay = function() return ${thinkMs} end`);
  if (visitors) {
    const quoted = (text) => `[==[${text}]==]`;
    lua.push("local visitors = {");
    for (const v of visitors.list) {
      const cookie = visitors.cookies ? `, ["Cookie"] = ${quoted(v.cookie)}` : "";
      lua.push(`  { ${quoted(v.path)}, { ["User-Agent"] = ${quoted(v.userAgent)}${cookie} } },`);
    }
    lua.push("}", "local next = 0");
    lua.push(
      "request = function()",
      "  next = next % #visitors + 1",
      "  local v = visitors[next]",
      '  return wrk.format("GET", v[1], v[2])',
      "end",
    );
  }
  lua.push(
    "done = function(summary, latency, requests)",
    '  io.write(string.format("PCT %d %d %d\\n", latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))',
    "end",
    "",
  );
  writeFileSync(path, lua.join("\n"));
  return path;
}

async function wrk(url, headers, thinkMs, visitors, seconds = DURATION) {
  const args = [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${seconds}s`, "-s", wrkScript(thinkMs, visitors)];
  for (const h of headers) args.push("-H", h);
  const { stdout: out } = await run("wrk", [...args, new URL("/articles/1", url).toString()], { encoding: "utf8" });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const [p50, p99, p999] = (/PCT (\d+) (\d+) (\d+)/.exec(out) ?? []).slice(1).map((us) => Number(us) / 1000);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? "0";
  return { rps, p50, p99, p999, errors: Number(errors) };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const spread = (xs, digits = 1) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return `${median(xs).toFixed(digits)} (${sorted[0].toFixed(digits)}-${sorted.at(-1).toFixed(digits)})`;
};
// BENCH_SCENARIOS: a comma-separated subset of the keys below (default: all).
const chosen = process.env.BENCH_SCENARIOS?.split(",");
const scenarios = [
  ["one-returning", "one returning visitor (valid cookies)", [`User-Agent: ${pool[0].userAgent}`, `Cookie: ${cookie}`]],
  ["one-new", "one new visitor (no cookies)", [`User-Agent: ${pool[0].userAgent}`]],
  ["returning", `${POOL_SIZE} returning visitors, ${USER_AGENTS.length} User-Agents`, [], { name: "returning", list: pool, cookies: true }],
  ["new", `new visitors, ${USER_AGENTS.length} User-Agents`, [], { name: "new", list: pool, cookies: false }],
].filter(([key]) => !chosen || chosen.includes(key));
// Saturation (no think time) measures throughput; there every latency is mostly queueing for
// the two cores wrk, workerd and this process share. The steady load (20 ms of think time per
// connection, about a third of the plain worker's capacity here) is where a tail is the
// worker's own.
// BENCH_LOADS: "saturation", "steady" or both (default).
const chosenLoads = process.env.BENCH_LOADS?.split(",");
const loads = [
  ["saturation", 0],
  ["steady load", Number(process.env.BENCH_THINK_MS ?? "20")],
].filter(([load]) => !chosenLoads || chosenLoads.includes(load.split(" ")[0]));
console.log(
  `wrk -t${THREADS} -c${CONNECTIONS} -d${DURATION}s, ${ROUNDS} paired rounds (order alternating), BENCH_SCENARIOS=${process.env.BENCH_SCENARIOS ?? "all"}; ` +
    "each figure: median of rounds (min-max); ratios: prewarm / plain per pair",
);
/** A fresh pair (unless BENCH_FRESH=0), each warmed up with the round's own requests at saturation. */
async function readyPair(headers, visitors) {
  if (FRESH) {
    await pair.dispose();
    pair = await startPair();
  }
  for (const kind of ["plain", "prewarm"]) await wrk(pair.urls[kind], headers, 0, visitors, WARM_UP_SECONDS);
  return pair.urls;
}
for (const [load, thinkMs] of loads) {
  for (const [, name, headers, visitors] of scenarios) {
    const runs = { prewarm: [], plain: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const roundUrls = await readyPair(headers, visitors);
      // Alternate which goes first, so neither always follows the other.
      const order = round % 2 === 0 ? ["plain", "prewarm"] : ["prewarm", "plain"];
      for (const kind of order) {
        runs[kind].push(await wrk(roundUrls[kind], headers, thinkMs, visitors));
        if (process.env.BENCH_VERBOSE) console.log(`    round ${round} ${kind}: ${JSON.stringify(runs[kind].at(-1))}`);
      }
    }
    console.log(`\n${name}, ${load}${thinkMs ? ` (${thinkMs} ms think time)` : ""}`);
    for (const kind of ["plain", "prewarm"]) {
      const errors = runs[kind].reduce((s, r) => s + r.errors, 0);
      const of = (key) => runs[kind].map((r) => r[key]);
      console.log(
        `  ${kind.padEnd(8)} req/s ${spread(of("rps"), 0)}  p50 ${spread(of("p50"))} ms  ` +
          `p99 ${spread(of("p99"))} ms  p99.9 ${spread(of("p999"))} ms  non-2xx ${errors}`,
      );
    }
    const paired = (key) => runs.prewarm.map((r, i) => r[key] / runs.plain[i][key]);
    console.log(
      `  prewarm / plain: req/s ${spread(paired("rps"), 3)}${thinkMs ? "" : " (target >= 0.90)"}  ` +
        `p50 ${spread(paired("p50"), 2)}  p99 ${spread(paired("p99"), 2)}${thinkMs ? " (target <= 1.2)" : ""}  ` +
        `p99.9 ${spread(paired("p999"), 2)}`,
    );
  }
}
await pair.dispose();
await origin.close();
await trainer.close();
