import { J_PER_WH } from "../../shared/units.ts";
import { loadLabel, pointId, type PointSpec } from "./matrix.ts";

/**
 * The tidy row of one measured point, and the pure arithmetic that makes it from what a runner
 * measured over the window [warmup, warmup + measure). Energy counts every GPU of the point
 * (`gpus`), idle time included; per-request energy is the window's energy over the requests that
 * finished in it (steady state: completions ≈ arrivals).
 */
export interface PointRow {
  id: string;
  experiment: string;
  mode: string;
  model: string;
  gpu: string;
  workloadClass: string;
  smClockMhz: number;
  /** Mean SM clock the GPUs ran at while busy (a power limit can throttle below the lock). */
  smClockActualMhz: number;
  maxBatch: number;
  tp: number;
  gpus: number;
  load: string;
  offeredRequestsPerS: number;
  warmupS: number;
  measureS: number;
  /** Requests that arrived in the window. */
  requests: number;
  /** Requests that finished in the window. */
  completed: number;
  /** Requests of the window refused or failed. */
  failed: number;
  energyJ: number;
  avgPowerW: number;
  powerPerGpuW: number;
  energyPerRequestJ: number;
  energyPerRequestWh: number;
  /** J per token processed (prompt + output). */
  jPerToken: number;
  jPerOutputToken: number;
  throughputTokensPerS: number;
  throughputRequestsPerS: number;
  meanBatch: number;
  ttftP50Ms: number;
  ttftP90Ms: number;
  ttftP99Ms: number;
  tpotP50Ms: number;
  tpotP90Ms: number;
  tpotP99Ms: number;
  e2eP50Ms: number;
  e2eP90Ms: number;
  sloTtftMs: number;
  sloTpotMs: number;
  /** Share of the window's requests that succeeded within both SLOs. */
  sloAttainment: number;
  sloMet: boolean;
  wallMs: number;
  measuredAt: string;
}

export interface MeasuredRequest {
  ok: boolean;
  ttftMs?: number;
  /** Mean time per output token after the first, ms (undefined for one-token answers). */
  tpotMs?: number;
  e2eMs?: number;
}

export interface WindowMeasurement {
  mode: string;
  windowMs: number;
  energyJ: number;
  promptTokens: number;
  outputTokens: number;
  completed: number;
  /** Requests that arrived in the window, with their latencies. */
  requests: MeasuredRequest[];
  offeredRequestsPerS: number;
  smClockActualMhz: number;
  meanBatch: number;
  wallMs: number;
}

export interface SloThresholds {
  ttftMs: number;
  tpotMs: number;
  attainment: number;
}

/** Nearest-rank quantile of unsorted values; NaN when empty. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

export function meetsSlo(r: MeasuredRequest, slo: SloThresholds): boolean {
  if (!r.ok || r.ttftMs === undefined || r.ttftMs > slo.ttftMs) return false;
  return r.tpotMs === undefined || r.tpotMs <= slo.tpotMs;
}

const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);

/** A point meets its SLO: it served requests, and enough of them met the thresholds. */
export function pointMeetsSlo(requests: number, attainment: number, slo: SloThresholds): boolean {
  return requests > 0 && attainment >= slo.attainment;
}

export function pointRow(p: PointSpec, m: WindowMeasurement, slo: SloThresholds, now = new Date()): PointRow {
  const secs = m.windowMs / 1000;
  const ok = m.requests.filter((r) => r.ok);
  const ttft = ok.flatMap((r) => (r.ttftMs === undefined ? [] : [r.ttftMs]));
  const tpot = ok.flatMap((r) => (r.tpotMs === undefined ? [] : [r.tpotMs]));
  const e2e = ok.flatMap((r) => (r.e2eMs === undefined ? [] : [r.e2eMs]));
  const good = m.requests.filter((r) => meetsSlo(r, slo)).length;
  const attainment = m.requests.length > 0 ? good / m.requests.length : 0;
  const energyPerRequestJ = ratio(m.energyJ, m.completed);
  return {
    id: pointId(p),
    experiment: p.experiment,
    mode: m.mode,
    model: p.model,
    gpu: p.gpu,
    workloadClass: p.workloadClass,
    smClockMhz: p.smClockMhz,
    smClockActualMhz: m.smClockActualMhz,
    maxBatch: p.maxBatch,
    tp: p.tp,
    gpus: p.gpus,
    load: loadLabel(p.load),
    offeredRequestsPerS: m.offeredRequestsPerS,
    warmupS: p.warmupS,
    measureS: p.measureS,
    requests: m.requests.length,
    completed: m.completed,
    failed: m.requests.length - ok.length,
    energyJ: m.energyJ,
    avgPowerW: ratio(m.energyJ, secs),
    powerPerGpuW: ratio(m.energyJ, secs * p.gpus),
    energyPerRequestJ,
    energyPerRequestWh: energyPerRequestJ / J_PER_WH,
    jPerToken: ratio(m.energyJ, m.promptTokens + m.outputTokens),
    jPerOutputToken: ratio(m.energyJ, m.outputTokens),
    throughputTokensPerS: ratio(m.outputTokens, secs),
    throughputRequestsPerS: ratio(m.completed, secs),
    meanBatch: m.meanBatch,
    ttftP50Ms: quantile(ttft, 0.5),
    ttftP90Ms: quantile(ttft, 0.9),
    ttftP99Ms: quantile(ttft, 0.99),
    tpotP50Ms: quantile(tpot, 0.5),
    tpotP90Ms: quantile(tpot, 0.9),
    tpotP99Ms: quantile(tpot, 0.99),
    e2eP50Ms: quantile(e2e, 0.5),
    e2eP90Ms: quantile(e2e, 0.9),
    sloTtftMs: slo.ttftMs,
    sloTpotMs: slo.tpotMs,
    sloAttainment: attainment,
    sloMet: pointMeetsSlo(m.requests.length, attainment, slo),
    wallMs: m.wallMs,
    measuredAt: now.toISOString(),
  };
}

/** Column order of the CSV (every field of PointRow). */
export const ROW_COLUMNS: readonly (keyof PointRow)[] = [
  "id", "experiment", "mode", "model", "gpu", "workloadClass", "smClockMhz", "smClockActualMhz", "maxBatch", "tp", "gpus", "load", "offeredRequestsPerS", "warmupS", "measureS",
  "requests", "completed", "failed", "energyJ", "avgPowerW", "powerPerGpuW", "energyPerRequestJ", "energyPerRequestWh", "jPerToken", "jPerOutputToken",
  "throughputTokensPerS", "throughputRequestsPerS", "meanBatch", "ttftP50Ms", "ttftP90Ms", "ttftP99Ms", "tpotP50Ms", "tpotP90Ms", "tpotP99Ms", "e2eP50Ms", "e2eP90Ms",
  "sloTtftMs", "sloTpotMs", "sloAttainment", "sloMet", "wallMs", "measuredAt",
];
