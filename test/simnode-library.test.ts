import test from "ava";
import fc from "fast-check";
import { simulate, type WorkloadRequest } from "../services/simnode/library.ts";
import { createSimNode } from "../services/simnode/node.ts";
import { H100_IDLE_W } from "../services/simnode/power-model.ts";
import { poissonClassWorkload } from "../services/simnode/workloads.ts";
import { H100_SUPPORTED_SM_CLOCKS_MHZ, snapSmClock, GPUS } from "../services/simnode/catalog.ts";

// Small, fast configurations: Llama-3-8B on 2 GPUs (2 instances at TP1) or Llama-2-13B at TP2.
const request = fc.record({
  arrivalMs: fc.double({ min: 0, max: 20_000, noNaN: true }),
  promptTokens: fc.integer({ min: 1, max: 3000 }),
  outputTokens: fc.integer({ min: 1, max: 400 }),
});
const workload = fc.array(request, { minLength: 1, maxLength: 40 });
const config = fc.record({
  model: fc.constantFrom("llama-3-8b", "llama-2-13b"),
  gpus: fc.constantFrom(1, 2, 4),
  smClockMhz: fc.constantFrom(1980, 1605, 1200, 990),
  maxBatch: fc.constantFrom(1, 4, 64),
});

test("simnode - energy counter equals the integral of step power plus idle power", (t) => {
  fc.assert(
    fc.property(workload, config, (w, c) => {
      const r = simulate(w, { ...c, recordSteps: true, sampleIntervalMs: 0 });
      for (const inst of r.instances) {
        const steps = r.steps!.filter((s) => s.instanceId === inst.id);
        const busyMs = steps.reduce((a, s) => a + (s.endMs - s.startMs), 0);
        const expectedMj = steps.reduce((a, s) => a + s.powerW * (s.endMs - s.startMs), 0) + H100_IDLE_W * (r.durationMs - busyMs);
        for (const g of inst.gpus) {
          if (Math.abs(r.gpuEnergyMj[g]! - expectedMj) > 1e-9 * expectedMj + 1e-6) return false;
        }
      }
      return true;
    }),
    { numRuns: 60 },
  );
  t.pass();
});

test("simnode - energy samples are non-decreasing and end at the final counter", (t) => {
  const w = poissonClassWorkload({ ratePerS: 3, durationS: 20, cls: "medium-medium", seed: 3 });
  const r = simulate(w, { model: "llama-3-8b", gpus: 1, sampleIntervalMs: 500, untilMs: 30_000 });
  const e = r.samples.energyMj[0]!;
  t.true(e.length >= 60);
  for (let k = 1; k < e.length; k++) t.true(e[k]! >= e[k - 1]!);
  // Idle between samples can never be below idle power, nor any step above the 700 W limit.
  for (let k = 1; k < e.length; k++) {
    const w = (e[k]! - e[k - 1]!) / (r.samples.tMs[k]! - r.samples.tMs[k - 1]!);
    t.true(w >= H100_IDLE_W - 1e-9 && w <= 700 + 1e-9, `power ${w} W at sample ${k}`);
  }
  t.true(r.gpuEnergyMj[0]! >= e[e.length - 1]!);
});

test("simnode - more load never lowers energy over the same horizon (requests pinned to instances, extra ones queued behind)", (t) => {
  // Pinned, because a least-loaded router may batch an extra request's neighbour differently and
  // save a few steps (found by this property: −0.3% with 5 vs 3 requests on 4 instances) — real
  // behaviour of load balancing, not an energy leak. Extra requests arrive no earlier than the
  // last of the base ones for the same reason: one that arrives first takes a base request's
  // place in the FCFS queue and can regroup the batches into fewer steps (found: 4 base requests
  // at t = 0 and 5e-324 ms on one GPU with batch 4, an extra one at t = 0).
  const pinned = (w: { arrivalMs: number; promptTokens: number; outputTokens: number }[], gpus: number) => w.map((r, i) => ({ ...r, instanceId: `i${i % gpus}` }));
  fc.assert(
    fc.property(workload, workload, config, (base, extra, c) => {
      const untilMs = 600_000;
      const lastBase = Math.max(...base.map((r) => r.arrivalMs));
      const behind = extra.map((r) => ({ ...r, arrivalMs: Math.max(r.arrivalMs, lastBase) }));
      const a = simulate(pinned(base, c.gpus), { ...c, sampleIntervalMs: 0, untilMs });
      const b = simulate(pinned([...base, ...behind], c.gpus), { ...c, sampleIntervalMs: 0, untilMs });
      return b.totalEnergyJ >= a.totalEnergyJ - 1e-9 * a.totalEnergyJ;
    }),
    { numRuns: 80 },
  );
  t.pass();
});

test("simnode - the same seed gives the same result, a different seed a different workload", (t) => {
  const run = (seed: number) => simulate(poissonClassWorkload({ ratePerS: 4, durationS: 30, cls: "short-long", seed }), { model: "llama-3-8b", gpus: 2, recordSteps: true });
  const a = run(11);
  const b = run(11);
  t.deepEqual(a, b);
  t.notDeepEqual(run(12).requests, a.requests);
});

test("simnode - every request gets its tokens, first token after arrival, in order", (t) => {
  fc.assert(
    fc.property(workload, config, (w, c) => {
      const r = simulate(w, { ...c, sampleIntervalMs: 0, recordTokenTimes: true });
      const served = r.requests.length + r.rejected.length === w.length;
      return (
        served &&
        r.requests.every((q) => q.tokenTimesMs!.length === q.outputTokens && q.firstTokenMs > q.arrivalMs && q.admitMs >= q.arrivalMs && q.tokenTimesMs!.every((x, i, a) => i === 0 || x > a[i - 1]!) && q.endMs === q.tokenTimesMs![q.outputTokens - 1])
      );
    }),
    { numRuns: 60 },
  );
  t.pass();
});

test("simnode - a full KV cache queues requests instead of running them", (t) => {
  const node = createSimNode({ model: "llama-2-70b", gpus: 2, tp: 2 });
  const cap = node.kvCapacityTokens;
  // Requests of 4000 tokens each: only floor(cap / 4000) fit at once.
  const n = Math.floor(cap / 4000) + 5;
  const w: WorkloadRequest[] = Array.from({ length: n }, () => ({ arrivalMs: 0, promptTokens: 3900, outputTokens: 100 }));
  const r = simulate(w, { model: "llama-2-70b", gpus: 2, tp: 2, maxBatch: 1000 });
  const admittedAtZero = r.requests.filter((q) => q.admitMs < 2000).length;
  t.is(r.requests.length, n);
  t.true(admittedAtZero <= Math.floor(cap / 4000), `${admittedAtZero} admitted at once with room for ${Math.floor(cap / 4000)}`);
  t.true(r.requests.some((q) => q.admitMs > 0));
});

test("simnode - lowering the SM clock saves power on decode-heavy load and costs prefill-heavy load more time", (t) => {
  const measure = (cls: "short-long" | "long-short", smClockMhz: number) => {
    const r = simulate(poissonClassWorkload({ ratePerS: 2, durationS: 60, cls, seed: 5 }), { model: "llama-2-70b", gpus: 4, tp: 4, smClockMhz });
    const busyJ = r.totalEnergyJ;
    const e2e = r.requests.reduce((a, q) => a + (q.endMs - q.arrivalMs), 0) / r.requests.length;
    const ttft = r.requests.reduce((a, q) => a + q.ttftMs, 0) / r.requests.length;
    return { busyJ, e2e, ttft };
  };
  const dHi = measure("short-long", 1980);
  const dLo = measure("short-long", 1395);
  const pHi = measure("long-short", 1980);
  const pLo = measure("long-short", 1395);
  t.true(dLo.busyJ < dHi.busyJ * 0.9, `decode-heavy energy ${dLo.busyJ} vs ${dHi.busyJ}`);
  t.true(dLo.e2e < dHi.e2e * 1.1, "decode-heavy latency barely moves");
  t.true(pLo.ttft / pHi.ttft > dLo.e2e / dHi.e2e, "prefill-heavy TTFT suffers more than decode-heavy latency");
  t.true(pLo.ttft > pHi.ttft * 1.2);
});

test("simnode - clocks snap to the H100's supported 15 MHz steps", (t) => {
  const g = GPUS["h100-sxm"]!;
  t.is(H100_SUPPORTED_SM_CLOCKS_MHZ[0], 1980);
  t.is(snapSmClock(g, 1601), 1605);
  t.is(snapSmClock(g, 5000), 1980);
  t.is(snapSmClock(g, 1), 345);
  t.true(H100_SUPPORTED_SM_CLOCKS_MHZ.every((f, i, a) => i === 0 || a[i - 1]! - f === 15));
});
