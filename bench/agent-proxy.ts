/**
 * Added latency of the agent's request tap, against a direct connection to the same server and
 * against a bare pass-through Node proxy (the floor for any extra hop: bench/helpers/passthrough-proxy.ts).
 * The tap is the real agent in its own process (bundled build, 8 fake-NVML GPUs sampled at 10 Hz,
 * publishing every request's events to a real nats-server), as on a node; the OpenAI-compatible
 * server and the bare proxy are processes of their own. Requests go one at a time, rotating
 * direct / bare / tap, so all three see the same machine; every response is checked whole.
 *
 * Two phases:
 * - per request: the server answers at once (all `tokens` chunks in one write), so a request's
 *   round trip is the transport and the proxy's work alone: added = p(tap) − p(direct);
 * - streamed: one chunk per token 1 ms apart: the shift of the inter-chunk gap and of the first byte.
 * Steady state is what a node lives in: the proxies' first requests run while V8 still compiles
 * them (a bare Node proxy's p99 is 2-3× higher in its first second), so `warmup` rounds go first,
 * and their own figures are reported apart (`cold…`: the first 1,000 rounds after start).
 * Usage: npm run bench -- agent-proxy [requests=2000] [tokens=32] [warmup=3000]
 * A slow driver: FAKE_NVML_CALL_DELAY_US=300 (every fake NVML call blocks 300 µs), with
 * BENCH_NVML_CALLS=sync|async|auto passed to the agent's --nvml-calls (default: the agent's, auto).
 */
import { request, Agent } from "node:http";
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { buildFakeNvml } from "../test/helpers/fake-nvml.ts";
import { firstMatch, printedUrl } from "./helpers/child-output.ts";
import { startTestNats } from "../test/helpers/nats-server.ts";

const N = Number(process.argv[2] ?? 2000);
const TOKENS = Number(process.argv[3] ?? 32);
// At least one round: the cold figures are taken from the warm-up.
const WARMUP = Math.max(1, Number(process.argv[4] ?? 3000));
const root = fileURLToPath(new URL("..", import.meta.url));

const echo = spawn(process.execPath, ["--import=tsx", `${root}/test/helpers/echo-main.ts`], { stdio: ["ignore", "pipe", "inherit"] });
const echoUrl = await printedUrl(echo.stdout!);
const bare = spawn(process.execPath, ["--import=tsx", `${root}/bench/helpers/passthrough-proxy.ts`, echoUrl], { stdio: ["ignore", "pipe", "inherit"] });
const bareUrl = await printedUrl(bare.stdout!);
if (!existsSync(`${root}/dist/joulestream.mjs`)) execFileSync("npm", ["run", "-s", "build"], { cwd: root, stdio: "inherit" });
const nats = await startTestNats();
const agentProc = spawn(
  process.execPath,
  [`${root}/dist/joulestream.mjs`, "agent", "--nats", nats.url, "--source", "nvml", "--nvml-library", await buildFakeNvml(), "--upstream", echoUrl, "--listen", "127.0.0.1:0", "--node-id", "bench", ...(process.env.BENCH_NVML_CALLS ? ["--nvml-calls", process.env.BENCH_NVML_CALLS] : [])],
  { env: { ...process.env, FAKE_NVML_GPUS: "8" }, stdio: ["ignore", "ignore", "pipe"] },
);
const tapUrl = (await firstMatch(agentProc.stderr!, /tap at (http:\/\/\S+)/))[1]!;
process.on("exit", () => [agentProc, bare, echo].forEach((p) => p.kill("SIGKILL")));
// Ctrl-C or a kill: the exit handler above still runs, so no server is left behind.
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => process.exit(130));

const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const body = JSON.stringify({ model: "m", prompt: Array.from({ length: 256 }, (_, i) => i), max_tokens: TOKENS, ignore_eos: true, stream: true });

interface Timing {
  totalMs: number;
  firstByteMs: number;
  gapsMs: number[];
}

function once(base: string, itlMs: number): Promise<Timing> {
  const url = new URL("/v1/completions", base);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let last = t0;
    let firstByteMs = Number.NaN;
    const gaps: number[] = [];
    let text = "";
    const headers = { "content-type": "application/json", "content-length": Buffer.byteLength(body), "x-echo-itl-ms": String(itlMs) };
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: "POST", agent, headers }, (res) => {
      res.setEncoding("utf8");
      res.on("data", (s: string) => {
        const now = performance.now();
        if (Number.isNaN(firstByteMs)) firstByteMs = now - t0;
        else gaps.push(now - last);
        last = now;
        text += s;
      });
      res.on("end", () => {
        const totalMs = performance.now() - t0;
        const tokens = text.split("\n").filter((l) => l.startsWith('data: {"id"') && !l.includes('"choices":[]')).length;
        if (!text.endsWith("data: [DONE]\n\n") || tokens !== TOKENS) reject(new Error(`${base}: a broken response (${tokens} token chunks, ends ${JSON.stringify(text.slice(-20))})`));
        else resolve({ totalMs, firstByteMs, gapsMs: gaps });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

const q = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? Number.NaN;
};
const ms = (x: number) => Math.round(x * 1000) / 1000;
const arms = { direct: echoUrl, bare: bareUrl, tap: tapUrl };
type Arm = keyof typeof arms;

async function phase(itlMs: number, n: number, label: string): Promise<Record<Arm, Timing[]>> {
  const out: Record<Arm, Timing[]> = { direct: [], bare: [], tap: [] };
  const order = Object.keys(arms) as Arm[];
  process.stderr.write(`${label}\n`);
  for (let i = 0; i < n; i++) {
    // Rotate which arm goes first, so none always follows another.
    for (let k = 0; k < order.length; k++) {
      const a = order[(i + k) % order.length]!;
      out[a].push(await once(arms[a], itlMs));
    }
    if ((i + 1) % 500 === 0) process.stderr.write(`  ${i + 1}/${n}\n`);
  }
  return out;
}

const cold = await phase(0, WARMUP, `warm-up: ${WARMUP} rounds`);
const fast = await phase(0, N, `per request: ${N} rounds`);
const coldTotal = (a: Arm) => cold[a].slice(0, 1000).map((x) => x.totalMs);
const total = (a: Arm) => fast[a].map((x) => x.totalMs);
const nStream = Math.max(20, Math.round(N / 10));
await phase(1, 20, "streamed: warm-up");
const slow = await phase(1, nStream, `streamed: ${nStream} rounds`);
const gaps = (a: Arm) => slow[a].flatMap((x) => x.gapsMs);
const firstByte = (a: Arm) => slow[a].map((x) => x.firstByteMs);
const shift = (xs: number[], ys: number[], p: number) => ms(q(xs, p) - q(ys, p));

const fig = {
  requests: N,
  tokensPerRequest: TOKENS,
  directP50Ms: ms(q(total("direct"), 0.5)),
  directP99Ms: ms(q(total("direct"), 0.99)),
  bareProxyP50Ms: ms(q(total("bare"), 0.5)),
  bareProxyP99Ms: ms(q(total("bare"), 0.99)),
  tapP50Ms: ms(q(total("tap"), 0.5)),
  tapP99Ms: ms(q(total("tap"), 0.99)),
  addedPerRequestP50Ms: shift(total("tap"), total("direct"), 0.5),
  addedPerRequestP99Ms: shift(total("tap"), total("direct"), 0.99),
  bareHopP50Ms: shift(total("bare"), total("direct"), 0.5),
  bareHopP99Ms: shift(total("bare"), total("direct"), 0.99),
  tapOverBareP50Ms: shift(total("tap"), total("bare"), 0.5),
  tapOverBareP99Ms: shift(total("tap"), total("bare"), 0.99),
  warmupRounds: WARMUP,
  coldRounds: coldTotal("tap").length,
  coldTapP99Ms: ms(q(coldTotal("tap"), 0.99)),
  coldAddedPerRequestP99Ms: shift(coldTotal("tap"), coldTotal("direct"), 0.99),
  coldBareHopP99Ms: shift(coldTotal("bare"), coldTotal("direct"), 0.99),
  streamedRequests: nStream,
  firstByteAddedP50Ms: shift(firstByte("tap"), firstByte("direct"), 0.5),
  firstByteAddedP99Ms: shift(firstByte("tap"), firstByte("direct"), 0.99),
  firstByteBareHopP50Ms: shift(firstByte("bare"), firstByte("direct"), 0.5),
  chunkGapDirectP50Ms: ms(q(gaps("direct"), 0.5)),
  addedPerChunkP50Ms: shift(gaps("tap"), gaps("direct"), 0.5),
  addedPerChunkP99Ms: shift(gaps("tap"), gaps("direct"), 0.99),
};
console.log("agent request tap: added latency (one request at a time, rotating direct / bare proxy / tap)");
console.log(`  per request, after ${WARMUP} rounds of warm-up (${N} × ${TOKENS} tokens, answered at once)`);
console.log(`    direct p50 ${fig.directP50Ms} p99 ${fig.directP99Ms} ms   bare proxy p50 ${fig.bareProxyP50Ms} p99 ${fig.bareProxyP99Ms} ms   tap p50 ${fig.tapP50Ms} p99 ${fig.tapP99Ms} ms`);
console.log(`    tap − direct p50 ${fig.addedPerRequestP50Ms} ms  p99 ${fig.addedPerRequestP99Ms} ms   (bare hop p50 ${fig.bareHopP50Ms}, p99 ${fig.bareHopP99Ms}; tap − bare p50 ${fig.tapOverBareP50Ms}, p99 ${fig.tapOverBareP99Ms})`);
console.log(`  cold: the first ${fig.coldRounds} rounds after start: tap p99 ${fig.coldTapP99Ms} ms, tap − direct p99 ${fig.coldAddedPerRequestP99Ms} ms (bare hop p99 ${fig.coldBareHopP99Ms})`);
console.log(`  streamed (${nStream} × ${TOKENS} chunks, 1 ms apart)`);
console.log(`    first byte: tap − direct p50 ${fig.firstByteAddedP50Ms} ms  p99 ${fig.firstByteAddedP99Ms} ms   (bare hop p50 ${fig.firstByteBareHopP50Ms})`);
console.log(`    chunk gap (direct p50 ${fig.chunkGapDirectP50Ms} ms): tap − direct p50 ${fig.addedPerChunkP50Ms} ms  p99 ${fig.addedPerChunkP99Ms} ms`);
console.log(JSON.stringify(fig));
agent.destroy();
await nats.stop();
process.exit(0);
