/**
 * The agent as a fleet runs it: its own process, 8 GPUs × 10 Hz through koffi (against the fake
 * libnvidia-ml.so), publishing to a real nats-server, tap listening. Steady-state CPU (share of one
 * core, measured from /proc after a warm-up) and RSS, for the bundled build (`npm run build`, as
 * deployed) and for tsx (as in development). For scale, the same measure of a Node process that
 * does nothing but a 10 Hz timer: what any Node process costs on this machine.
 * Usage: npm run bench -- agent-process [seconds=30]
 */
import { spawn, execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { buildFakeNvml } from "../test/helpers/fake-nvml.ts";
import { startTestNats } from "../test/helpers/nats-server.ts";
import { cpuTicksOf } from "./helpers/proc.ts";

const SECONDS = Number(process.argv[2] ?? 30);
const root = fileURLToPath(new URL("..", import.meta.url));
const TICK_HZ = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim());
const lib = await buildFakeNvml();
const nats = await startTestNats();
if (!existsSync(`${root}/dist/joulestream.mjs`)) execFileSync("npm", ["run", "-s", "build"], { cwd: root, stdio: "inherit" });

const cpuTicks = cpuTicksOf;
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;

async function measure(entry: string) {
  const args = entry === "idle" ? ["-e", "setInterval(() => {}, 100)"] : [entry, "agent", "--nats", nats.url, "--source", "nvml", "--nvml-library", lib, "--upstream", "http://127.0.0.1:9", "--listen", "127.0.0.1:0", "--node-id", "bench"];
  const p = spawn(process.execPath, args, {
    env: { ...process.env, FAKE_NVML_GPUS: "8" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  await new Promise((r) => setTimeout(r, 5000)); // start-up and JIT warm-up
  const c0 = cpuTicks(p.pid!);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const cpuS = (cpuTicks(p.pid!) - c0) / TICK_HZ;
  const wallS = (performance.now() - t0) / 1000;
  const rss = rssMb(p.pid!);
  p.kill("SIGTERM");
  await new Promise((r) => p.once("exit", r));
  return { cpuPctOfCore: (100 * cpuS) / wallS, rssMb: rss };
}

const bundled = await measure(`${root}/dist/joulestream.mjs`);
const tsx = await measure(`${root}/bin/joulestream.mjs`);
const idle = await measure("idle");
await nats.stop();
console.log(`agent process, 8 GPUs × 10 Hz via koffi (fake NVML), POWER/WORK to nats-server, ${SECONDS} s steady state`);
console.log(`  bundled (dist/, as deployed)  CPU ${bundled.cpuPctOfCore.toFixed(2)}% of one core   RSS ${bundled.rssMb.toFixed(1)} MB`);
console.log(`  tsx (development)             CPU ${tsx.cpuPctOfCore.toFixed(2)}% of one core   RSS ${tsx.rssMb.toFixed(1)} MB`);
console.log(`  idle node, one 10 Hz timer    CPU ${idle.cpuPctOfCore.toFixed(2)}% of one core   RSS ${idle.rssMb.toFixed(1)} MB   (for scale)`);
console.log(JSON.stringify({ seconds: SECONDS, gpus: 8, sampleHz: 10, bundledCpuPct: bundled.cpuPctOfCore, bundledRssMb: bundled.rssMb, tsxCpuPct: tsx.cpuPctOfCore, tsxRssMb: tsx.rssMb, idleNodeCpuPct: idle.cpuPctOfCore, idleNodeRssMb: idle.rssMb }));
process.exit(0);
