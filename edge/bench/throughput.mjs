// Requests per second through the prewarm worker vs a plain pass-through worker, both in the
// same local workerd (Miniflare), same origin, same load generator (wrk), same concurrency.
// Run through `cargo xtask bench` (it builds the worker and writes the model fixtures first).
import { execFile } from "node:child_process";
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
  bindings: { ORIGIN_URL: origin.url, TRAINER_URL: trainer.url, ...SECRETS },
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

async function wrk(url, headers) {
  const args = ["-t2", `-c${CONNECTIONS}`, `-d${DURATION}s`, "--latency"];
  for (const h of headers) args.push("-H", h);
  const { stdout: out } = await run("wrk", [...args, new URL("/articles/1", url).toString()], { encoding: "utf8" });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = /50%\s+([\d.]+\w+)/.exec(out)?.[1];
  const p99 = /99%\s+([\d.]+\w+)/.exec(out)?.[1];
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? "0";
  return { rps, p50, p99, errors: Number(errors) };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const scenarios = [
  ["returning visitor (valid cookies)", ["User-Agent: Mozilla/5.0 (X11; Linux x86_64)", `Cookie: ${cookie}`]],
  ["new visitor (no cookies)", ["User-Agent: Mozilla/5.0 (X11; Linux x86_64)"]],
];
console.log(`wrk -t2 -c${CONNECTIONS} -d${DURATION}s, ${ROUNDS} rounds of plain then prewarm; the ratio of each adjacent pair, median of rounds`);
await wrk(urls.plain, scenarios[0][1]); // warm both
await wrk(urls.prewarm, scenarios[0][1]);
for (const [name, headers] of scenarios) {
  const runs = { prewarm: [], plain: [] };
  const ratios = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate which goes first, so neither always follows the other.
    const order = round % 2 === 0 ? ["plain", "prewarm"] : ["prewarm", "plain"];
    for (const kind of order) runs[kind].push(await wrk(urls[kind], headers));
    ratios.push(runs.prewarm.at(-1).rps / runs.plain.at(-1).rps);
  }
  const rps = (kind) => median(runs[kind].map((r) => r.rps));
  const last = (kind) => runs[kind].at(-1);
  console.log(`\n${name}`);
  for (const kind of ["plain", "prewarm"]) {
    const errors = runs[kind].reduce((s, r) => s + r.errors, 0);
    console.log(`  ${kind.padEnd(8)} ${rps(kind).toFixed(0).padStart(7)} req/s  p50 ${last(kind).p50}  p99 ${last(kind).p99}  non-2xx ${errors}`);
  }
  const sorted = [...ratios].sort((a, b) => a - b);
  console.log(`  ratio prewarm / plain: ${median(ratios).toFixed(3)} (rounds ${sorted[0].toFixed(2)}-${sorted.at(-1).toFixed(2)}; target >= 0.90)`);
}
await prewarm.dispose();
await plain.dispose();
await origin.close();
await trainer.close();
