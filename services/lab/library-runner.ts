import { performance } from "node:perf_hooks";
import { simulate } from "../simnode/mod.ts";
import type { PointSpec } from "./matrix.ts";
import type { MeasuredRequest, WindowMeasurement } from "./metrics.ts";
import { pointWorkload, requestRate } from "./workload.ts";

/**
 * Library mode: the simulated node as a pure function, no wall clock. The energy counters are
 * sampled every SAMPLE_MS and read at the window's edges, exactly as a real run reads NVML's
 * counter; tokens and latencies come from the engine's steps and per-request timings.
 */
export const SAMPLE_MS = 100;

export interface PointRunner {
  readonly mode: string;
  /** Sets the point's configuration, runs warmup + window, and restores what it changed. */
  measure(p: PointSpec, signal?: AbortSignal): Promise<WindowMeasurement>;
  /** Restores every knob this runner changed (idempotent; called on failure and Ctrl-C too). */
  restore(): Promise<void>;
}

export function createLibraryRunner(): PointRunner {
  return {
    mode: "library",
    measure: async (p) => measureLibraryPoint(p),
    restore: async () => {},
  };
}

export function measureLibraryPoint(p: PointSpec): WindowMeasurement {
  const t0 = performance.now();
  const w0 = Math.round((p.warmupS * 1000) / SAMPLE_MS) * SAMPLE_MS;
  const w1 = w0 + Math.round((p.measureS * 1000) / SAMPLE_MS) * SAMPLE_MS;
  const workload = pointWorkload(p);
  const r = simulate(workload, { model: p.model, gpuModel: p.gpu, gpus: p.gpus, tp: p.tp, maxBatch: p.maxBatch, smClockMhz: p.smClockMhz, sampleIntervalMs: SAMPLE_MS, recordSteps: true, untilMs: w1 });

  const k0 = r.samples.tMs.indexOf(w0);
  const k1 = r.samples.tMs.indexOf(w1);
  let energyMj = 0;
  for (const e of r.samples.energyMj) energyMj += e[k1]! - e[k0]!;

  // Tokens emitted at the end of a step inside the window; batch and clock weighted by busy time.
  let outputTokens = 0, promptTokens = 0, busyMs = 0, batchMs = 0, clockMs = 0;
  for (const s of r.steps!) {
    if (s.endMs > w0 && s.endMs <= w1) {
      outputTokens += s.tokens;
      promptTokens += s.prefillTokens;
    }
    const overlap = Math.min(s.endMs, w1) - Math.max(s.startMs, w0);
    if (overlap > 0) {
      busyMs += overlap;
      batchMs += overlap * s.decodeSeqs;
      clockMs += overlap * s.smClockMhz;
    }
  }
  const requests: MeasuredRequest[] = [];
  let completed = 0;
  for (const q of r.requests) {
    if (q.endMs > w0 && q.endMs <= w1) completed++;
    if (q.arrivalMs < w0 || q.arrivalMs >= w1) continue;
    requests.push({ ok: Number.isFinite(q.endMs), ttftMs: q.ttftMs, ...(q.outputTokens > 1 ? { tpotMs: q.meanItlMs } : {}), e2eMs: q.endMs - q.arrivalMs });
  }
  const arrivalById = new Map(workload.map((q, i) => [q.id ?? `r${i}`, q.arrivalMs]));
  for (const x of r.rejected) {
    const a = arrivalById.get(x.id) ?? -1;
    if (a >= w0 && a < w1) requests.push({ ok: false });
  }
  return {
    mode: "library",
    windowMs: w1 - w0,
    energyJ: energyMj / 1000,
    promptTokens,
    outputTokens,
    completed,
    requests,
    offeredRequestsPerS: requestRate(p),
    smClockActualMhz: busyMs > 0 ? clockMs / busyMs : p.smClockMhz,
    meanBatch: busyMs > 0 ? batchMs / busyMs : 0,
    wallMs: performance.now() - t0,
  };
}
