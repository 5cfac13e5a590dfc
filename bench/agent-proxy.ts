/**
 * Added latency of the agent's request tap: the same streamed requests sent directly to a fast
 * OpenAI-compatible endpoint and through the tap, alternating, one at a time. The tap is the real
 * agent in its own process (bundled build, 8 fake-NVML GPUs sampled at 10 Hz, publishing to a real
 * nats-server), as on a node; the server is a third process.
 * Figures: per request (time to the last byte) and per streamed chunk (inter-chunk gap), p50/p99 of
 * tap − direct. Usage: npm run bench -- agent-proxy [requests=400] [tokens=32]
 */
import { request, Agent } from "node:http";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { buildFakeNvml } from "../test/helpers/fake-nvml.ts";
import { startTestNats } from "../test/helpers/nats-server.ts";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const N = Number(process.argv[2] ?? 400);
const TOKENS = Number(process.argv[3] ?? 32);

// A fast OpenAI-compatible server in its own process (it must not share our event loop): one chunk
// per token, 1 ms apart, so per-chunk overhead shows in the gaps.
const child = spawn(process.execPath, ["--import=tsx", fileURLToPath(new URL("../services/loadgen/testing/echo-main.ts", import.meta.url))], {
  env: { ...process.env, ECHO_ITL_MS: "1" },
  stdio: ["ignore", "pipe", "inherit"],
});
const echo = { url: (JSON.parse((await createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next()).value as string) as { url: string }).url };
const root = fileURLToPath(new URL("..", import.meta.url));
if (!existsSync(`${root}/dist/joulestream.mjs`)) execFileSync("npm", ["run", "-s", "build"], { cwd: root, stdio: "inherit" });
const nats = await startTestNats();
const agentProc = spawn(
  process.execPath,
  [`${root}/dist/joulestream.mjs`, "agent", "--nats", nats.url, "--source", "nvml", "--nvml-library", await buildFakeNvml(), "--upstream", echo.url, "--listen", "127.0.0.1:0", "--node-id", "bench"],
  { env: { ...process.env, FAKE_NVML_GPUS: "8" }, stdio: ["ignore", "ignore", "pipe"] },
);
const tap = { url: "" };
for await (const line of createInterface({ input: agentProc.stderr! })) {
  const m = /tap at (http:\/\/\S+)/.exec(line);
  if (m) {
    tap.url = m[1]!;
    break;
  }
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const body = JSON.stringify({ model: "m", prompt: Array.from({ length: 256 }, (_, i) => i), max_tokens: TOKENS, ignore_eos: true, stream: true });

function once(base: string): Promise<{ totalMs: number; gapsMs: number[] }> {
  const url = new URL("/v1/completions", base);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let last = t0;
    const gaps: number[] = [];
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
      res.on("data", () => {
        const now = performance.now();
        gaps.push(now - last);
        last = now;
      });
      res.on("end", () => resolve({ totalMs: performance.now() - t0, gapsMs: gaps.slice(1) }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const q = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
};

// Warm-up (JIT, sockets).
for (let i = 0; i < 50; i++) {
  await once(echo.url);
  await once(tap.url);
}
const direct: number[] = [];
const tapped: number[] = [];
const gDirect: number[] = [];
const gTap: number[] = [];
for (let i = 0; i < N; i++) {
  const d = await once(echo.url);
  const p = await once(tap.url);
  direct.push(d.totalMs);
  tapped.push(p.totalMs);
  gDirect.push(...d.gapsMs);
  gTap.push(...p.gapsMs);
}
const added = tapped.map((x, i) => x - direct[i]!);
const fig = {
  requests: N,
  tokensPerRequest: TOKENS,
  directP50Ms: q(direct, 0.5),
  tapP50Ms: q(tapped, 0.5),
  directP99Ms: q(direct, 0.99),
  tapP99Ms: q(tapped, 0.99),
  // Added latency as the shift of the distribution (p(tap) − p(direct)), which is what a client
  // sees; the pairwise difference's p99 also carries both runs' independent jitter.
  addedPerRequestP50Ms: q(tapped, 0.5) - q(direct, 0.5),
  addedPerRequestP99Ms: q(tapped, 0.99) - q(direct, 0.99),
  pairwiseDiffP50Ms: q(added, 0.5),
  pairwiseDiffP99Ms: q(added, 0.99),
  chunkGapDirectP50Ms: q(gDirect, 0.5),
  chunkGapTapP50Ms: q(gTap, 0.5),
  addedPerChunkP50Ms: q(gTap, 0.5) - q(gDirect, 0.5),
  addedPerChunkP99Ms: q(gTap, 0.99) - q(gDirect, 0.99),
};
console.log("agent request tap overhead (streamed completions, one at a time, alternating direct/tap)");
console.log(`  requests ${N} × ${TOKENS} tokens`);
console.log(`  per request   direct p50 ${fig.directP50Ms.toFixed(3)} p99 ${fig.directP99Ms.toFixed(3)} ms   tap p50 ${fig.tapP50Ms.toFixed(3)} p99 ${fig.tapP99Ms.toFixed(3)} ms`);
console.log(`                added p50 ${fig.addedPerRequestP50Ms.toFixed(3)} ms  p99 ${fig.addedPerRequestP99Ms.toFixed(3)} ms   (pairwise difference p50 ${fig.pairwiseDiffP50Ms.toFixed(3)}, p99 ${fig.pairwiseDiffP99Ms.toFixed(3)} ms)`);
console.log(`  per chunk     direct p50 ${fig.chunkGapDirectP50Ms.toFixed(4)} ms  tap p50 ${fig.chunkGapTapP50Ms.toFixed(4)} ms  added p50 ${fig.addedPerChunkP50Ms.toFixed(4)} ms  p99 ${fig.addedPerChunkP99Ms.toFixed(4)} ms`);
console.log(JSON.stringify(fig));
agentProc.kill("SIGTERM");
child.kill("SIGTERM");
await nats.stop();
agent.destroy();
process.exit(0);
