// Requests per second and latency percentiles (p50, p99, p99.9) through the prewarm worker vs a
// plain pass-through worker, both in the same local workerd (Miniflare), same origin, same load
// generator (wrk), same concurrency, in alternating paired rounds. Run through
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
const prewarm = new Miniflare({
  ...common,
  scriptPath: process.env.BENCH_SCRIPT ?? "edge/worker.mjs",
  modulesRules: [
    { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
    { type: "CompiledWasm", include: ["**/*.wasm"] },
  ],
  kvNamespaces: ["PREWARM_MODEL"],
});
const plain = new Miniflare({ ...common, script: PLAIN_PASS_THROUGH });
await publish(prewarm, fixtureModel("model-v1"));
const urls = { prewarm: String(await prewarm.ready), plain: String(await plain.ready) };

// A returning visitor's cookies, so the steady state (verify + update + re-sign) is measured.
const first = await fetch(new URL("/articles/1", urls.prewarm), { headers: { "user-agent": "Mozilla/5.0 (X11; Linux x86_64)" } });
await first.arrayBuffer();
const cookie = first.headers.getSetCookie().map((c) => c.split(";")[0]).filter((c) => c.startsWith("pw_")).join("; ");

// Asynchronous on purpose: the origin and the trainer stand-in live in this process.
const run = promisify(execFile);

// wrk's own histogram, read exactly (its --latency table stops at p99); with `think`, each
// connection waits that long after an answer before its next request, as visitors do.
function wrkScript(thinkMs) {
  const path = join(tmpdir(), `prewarm-bench-${thinkMs}ms.lua`);
  writeFileSync(
    path,
    `${thinkMs > 0 ? `delay = function() return ${thinkMs} end\n` : ""}done = function(summary, latency, requests)
  io.write(string.format("PCT %d %d %d\\n", latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
`,
  );
  return path;
}

async function wrk(url, headers, thinkMs) {
  const args = ["-t2", `-c${CONNECTIONS}`, `-d${DURATION}s`, "-s", wrkScript(thinkMs)];
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
const scenarios = [
  ["returning visitor (valid cookies)", ["User-Agent: Mozilla/5.0 (X11; Linux x86_64)", `Cookie: ${cookie}`]],
  ["new visitor (no cookies)", ["User-Agent: Mozilla/5.0 (X11; Linux x86_64)"]],
];
// Saturation (no think time) measures throughput; there every latency is mostly queueing for
// the two cores wrk, workerd and this process share. The steady load (20 ms of think time per
// connection, about a third of the plain worker's capacity here) is where a tail is the
// worker's own.
const loads = [
  ["saturation", 0],
  ["steady load", Number(process.env.BENCH_THINK_MS ?? "20")],
];
console.log(
  `wrk -t2 -c${CONNECTIONS} -d${DURATION}s, ${ROUNDS} paired rounds (order alternating); ` +
    "each figure: median of rounds (min-max); ratios: prewarm / plain per pair",
);
await wrk(urls.plain, scenarios[0][1], 0); // warm both
await wrk(urls.prewarm, scenarios[0][1], 0);
for (const [load, thinkMs] of loads) {
  for (const [name, headers] of scenarios) {
    const runs = { prewarm: [], plain: [] };
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which goes first, so neither always follows the other.
      const order = round % 2 === 0 ? ["plain", "prewarm"] : ["prewarm", "plain"];
      for (const kind of order) {
        runs[kind].push(await wrk(urls[kind], headers, thinkMs));
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
await prewarm.dispose();
await plain.dispose();
await origin.close();
await trainer.close();
