/**
 * Real-time server cost at demo load: a simulated 8×H100 node (Llama-2-70B, TP4 → 2 instances) in a
 * child process, streaming Poisson load from this process, CPU time of the server measured with
 * process.cpuUsage() over the load window. Also checks the server keeps up: client-side inter-token
 * latency vs. the engine's.   npm run bench -- simnode-realtime [reqPerS=5] [seconds=20]
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { poissonClassWorkload } from "../services/simnode/mod.ts";

const rate = Number(process.argv[2] ?? 5);
const seconds = Number(process.argv[3] ?? 20);
const serverPath = new URL("../services/simnode/server.ts", import.meta.url).pathname;
const childCode = `
import { startSimnode } from ${JSON.stringify(serverPath)};
import { createInterface } from "node:readline";
const sim = await startSimnode({ gpus: 8, tp: 4, model: "llama-2-70b", seed: 1 });
console.log(JSON.stringify({ url: sim.url }));
for await (const line of createInterface({ input: process.stdin })) {
  if (line === "cpu") console.log(JSON.stringify({ cpu: process.cpuUsage(), rssMb: process.memoryUsage().rss / 2 ** 20 }));
  if (line === "stop") { await sim.stop(); process.exit(0); }
}`;
const child = spawn(process.execPath, ["--import=tsx", "--input-type=module", "-e", childCode], { stdio: ["pipe", "pipe", "inherit"] });
const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
const next = async () => JSON.parse((await lines.next()).value as string);
const { url } = await next();
const ask = async () => {
  child.stdin!.write("cpu\n");
  return (await next()) as { cpu: NodeJS.CpuUsage; rssMb: number };
};

const workload = poissonClassWorkload({ ratePerS: rate, durationS: seconds, cls: "medium-medium", seed: 3 });
const before = await ask();
const t0 = performance.now();
let tokens = 0;
const itlGaps: number[] = [];
await Promise.all(
  workload.map(async (w) => {
    await new Promise((r) => setTimeout(r, w.arrivalMs));
    const res = await fetch(`${url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: Array.from({ length: w.promptTokens }, () => 1), max_tokens: w.outputTokens, ignore_eos: true, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } }) });
    let last: number | undefined;
    const dec = new TextDecoder();
    for await (const chunk of res.body!) {
      const n = (dec.decode(chunk as Uint8Array, { stream: true }).match(/"text"/g) ?? []).length;
      const now = performance.now();
      if (n > 0 && last !== undefined) itlGaps.push((now - last) / n);
      if (n > 0) last = now;
      tokens += n;
    }
  }),
);
const wallS = (performance.now() - t0) / 1000;
const after = await ask();
child.stdin!.write("stop\n");
const cpuS = (after.cpu.user - before.cpu.user + after.cpu.system - before.cpu.system) / 1e6;
itlGaps.sort((a, b) => a - b);
const fig = {
  bench: "simnode-realtime",
  reqPerS: rate,
  requests: workload.length,
  wallS: +wallS.toFixed(1),
  tokensStreamed: tokens,
  serverCpuS: +cpuS.toFixed(2),
  serverCpuPctOfOneCore: +((100 * cpuS) / wallS).toFixed(1),
  cpuMsPerRequest: +((1000 * cpuS) / workload.length).toFixed(2),
  cpuUsPerToken: +((1e6 * cpuS) / tokens).toFixed(1),
  serverRssMb: +after.rssMb.toFixed(0),
  clientItlP50Ms: +itlGaps[itlGaps.length >> 1]!.toFixed(1),
  clientItlP99Ms: +itlGaps[Math.floor(itlGaps.length * 0.99)]!.toFixed(1),
};
console.log(`simulated 8×H100, Llama-2-70B TP4 (2 instances), medium-medium Poisson load at ${rate} req/s for ${seconds} s\n`);
for (const [k, v] of Object.entries(fig)) if (k !== "bench") console.log(`${k.padEnd(24)}${v}`);
console.log(JSON.stringify(fig));
