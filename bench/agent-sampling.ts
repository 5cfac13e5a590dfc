/**
 * Agent sampling cost through koffi against the fake libnvidia-ml: CPU time per second of wall
 * time, per-sample latency and RSS while sampling N GPUs at H Hz — and, over the same run, the
 * energy check: counter delta vs power × time per GPU at constant power.
 *
 *   npm run bench -- agent-sampling [--gpus 8] [--hz 10] [--seconds 10] [--energy-period-ms 0]
 *                                   [--calls sync|async] [--call-delay-us 0] [--extras-interval-ms 1000]
 *
 * `--calls async` prices koffi's asynchronous calls (what the agent moves to with a slow driver);
 * `--call-delay-us` makes every fake NVML call block that long, as a slow driver would.
 * Targets: < 1% of one core, < 80 MB RSS; energy within 0.1% (run --seconds 60 for the full check).
 *
 * `--library PATH` samples a real libnvidia-ml instead (read only: nothing is set on the GPU), every
 * GPU it has; the energy check is then the GPU's own energy counter against the integral of the
 * sampled power (trapezoids), since the power is whatever the GPU draws.
 */
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { systemClock } from "../shared/mod.ts";
import type { GpuReading } from "../services/agent/mod.ts";
import { createNvmlSource } from "../services/agent/mod.ts";
import { buildFakeNvml, withFakeNvmlEnv } from "../test/helpers/fake-nvml.ts";

const { values: args } = parseArgs({
  options: {
    gpus: { type: "string", default: "8" },
    hz: { type: "string", default: "10" },
    seconds: { type: "string", default: "10" },
    "energy-period-ms": { type: "string", default: "0" },
    calls: { type: "string", default: "sync" },
    "call-delay-us": { type: "string", default: "0" },
    library: { type: "string" },
    "extras-interval-ms": { type: "string", default: "1000" },
  },
});
const hz = Number(args.hz);
const seconds = Number(args.seconds);
const real = args.library !== undefined;
/** The fake's constant power per GPU; with a real library, none (the check integrates the samples). */
const powersW = real ? undefined : Array.from({ length: Number(args.gpus) }, (_, i) => 300 + 10 * i);

const clock = systemClock();
const calls = args.calls === "async" ? "async" : "sync";
const extrasIntervalMs = Number(args["extras-interval-ms"]);
const fakeLibrary = powersW ? await buildFakeNvml() : undefined;
const nvml = powersW
  ? withFakeNvmlEnv({ GPUS: powersW.length, POWER_W: powersW.join(","), ENERGY_PERIOD_MS: args["energy-period-ms"]!, CALL_DELAY_US: args["call-delay-us"]! }, () =>
      createNvmlSource({ clock, libraryPath: fakeLibrary!, calls, extrasIntervalMs }),
    )
  : createNvmlSource({ clock, libraryPath: args.library!, calls, extrasIntervalMs });
const described = await nvml.describe();
const gpus = described.gpus.length;
for (let i = 0; i < 50; i++) await nvml.sample(); // warm up the JIT before measuring

const mb = (bytes: number) => bytes / 2 ** 20;

/** Runs `tick` at `hz` for `forS` seconds; returns the process CPU, % of one core, over that time. */
async function timed(forS: number, tick: () => Promise<void>): Promise<{ cpuPct: number; wallS: number }> {
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(async () => {
      await tick();
      if (performance.now() - wall0 >= forS * 1000) {
        clearInterval(timer);
        resolve();
      }
    }, 1000 / hz);
  });
  const wallS = (performance.now() - wall0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { cpuPct: ((cpu.user + cpu.system) / 1e6 / wallS) * 100, wallS };
}

// Baseline: the same timer with nothing to do, so the runtime's own cost (V8, the tsx loader
// thread) is not charged to sampling.
const baselineS = Math.min(seconds, 5);
const baseline = await timed(baselineS, async () => {});
const rssBeforeMb = mb(process.memoryUsage.rss());

const latenciesUs: number[] = [];
let first: GpuReading[] | undefined;
let last: GpuReading[] = [];
const all: GpuReading[][] = [];
let rssMaxMb = rssBeforeMb;
const run = await timed(seconds, async () => {
  const t0 = performance.now();
  last = await nvml.sample();
  latenciesUs.push((performance.now() - t0) * 1000);
  if (real) all.push(last);
  first ??= last;
  if (latenciesUs.length % hz === 0) rssMaxMb = Math.max(rssMaxMb, mb(process.memoryUsage.rss()));
});
const wallS = run.wallS;
const heapUsedMb = mb(process.memoryUsage().heapUsed);
await nvml.close();

const cpuPctOfCore = run.cpuPct;
const samplingCpuPct = Math.max(0, run.cpuPct - baseline.cpuPct);
const inCallsPct = (latenciesUs.reduce((a, b) => a + b, 0) / 1e6 / wallS) * 100;
const sorted = [...latenciesUs].sort((a, b) => a - b);
const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
let maxEnergyErr = 0;
const perGpu: { gpu: number; meanPowerW: number; counterJ: number; integralJ: number }[] = [];
for (const info of described.gpus) {
  const gpu = info.index;
  const a = first!.find((r) => r.gpu === gpu)!;
  const b = last.find((r) => r.gpu === gpu)!;
  // Constant power for the fake; for a real GPU, the trapezoidal integral of what was sampled.
  let expectedMj = 0;
  if (powersW) expectedMj = (powersW[gpu]! * 1000 * (b.tMs - a.tMs)) / 1000;
  else {
    const rs = all.map((s) => s.find((r) => r.gpu === gpu)).filter((r): r is GpuReading => r !== undefined);
    for (let i = 1; i < rs.length; i++) expectedMj += ((rs[i - 1]!.powerMw + rs[i]!.powerMw) / 2) * ((rs[i]!.tMs - rs[i - 1]!.tMs) / 1000);
  }
  const counterMj = b.energyMj! - a.energyMj!;
  perGpu.push({ gpu, meanPowerW: expectedMj / (b.tMs - a.tMs), counterJ: counterMj / 1000, integralJ: expectedMj / 1000 });
  maxEnergyErr = Math.max(maxEnergyErr, Math.abs(counterMj / expectedMj - 1));
}

const rows: [string, string, string][] = [
  ["GPUs × rate", `${gpus}${real ? ` (${described.gpus[0]?.name}, driver ${described.driverVersion})` : ""} × ${hz} Hz, ${calls} calls, extras every ${extrasIntervalMs} ms${Number(args["call-delay-us"]) ? `, ${args["call-delay-us"]} µs each` : ""}`, ""],
  ["duration", `${wallS.toFixed(1)} s (${latenciesUs.length} samples)`, ""],
  ["CPU, % of one core: total", cpuPctOfCore.toFixed(3), ""],
  ["  idle runtime baseline", `${baseline.cpuPct.toFixed(3)} (${baselineS} s, same timer)`, ""],
  ["  sampling (total − idle)", samplingCpuPct.toFixed(3), "< 1"],
  ["  inside sample() calls", inCallsPct.toFixed(3), ""],
  ["sample latency p50", `${pct(50).toFixed(1)} µs`, ""],
  ["sample latency p99", `${pct(99).toFixed(1)} µs`, ""],
  ["RSS before sampling", `${rssBeforeMb.toFixed(1)} MB (node + tsx + koffi)`, ""],
  ["RSS max while sampling", `${rssMaxMb.toFixed(1)} MB`, "< 80"],
  ["heap used at end", `${heapUsedMb.toFixed(1)} MB`, ""],
  ["energy error, worst GPU", `${(maxEnergyErr * 100).toFixed(4)} % over ${wallS.toFixed(1)} s${real ? " (counter vs ∫ sampled power)" : ""}`, real ? "" : "< 0.1 %"],
];
console.log(`agent sampling through koffi against ${real ? `the real ${args.library}` : "the fake libnvidia-ml"}`);
if (real) for (const g of perGpu) console.log(`  GPU ${g.gpu}: mean ${g.meanPowerW.toFixed(1)} W; counter ${g.counterJ.toFixed(1)} J, ∫ samples ${g.integralJ.toFixed(1)} J`);
for (const [k, v, target] of rows) console.log(`  ${k.padEnd(26)} ${v.padEnd(34)} ${target}`);
console.log(JSON.stringify({
  bench: "agent-sampling", library: real ? "real" : "fake", gpuName: real ? described.gpus[0]?.name : undefined, driverVersion: real ? described.driverVersion : undefined, perGpu: real ? perGpu : undefined, gpus, hz, calls, extrasIntervalMs, callDelayUs: Number(args["call-delay-us"]), seconds: wallS, samples: latenciesUs.length,
  cpuPctOfCore, baselineCpuPct: baseline.cpuPct, samplingCpuPct, inCallsPct, latencyP50Us: pct(50), latencyP99Us: pct(99), rssBeforeMb, rssMaxMb, heapUsedMb,
  energyMaxRelErr: maxEnergyErr, energyPeriodMs: Number(args["energy-period-ms"]),
}));
