import type { WorkloadRequest } from "./library.ts";
import { createRng } from "./rng.ts";
import type { Length, WorkloadClass } from "../../shared/workload-classes.ts";

/**
 * Workloads for library mode: the paper's nine workload classes (shared/workload-classes.ts) as
 * seeded synthetic Poisson arrivals, and closed bursts. Recorded traces (Azure, Mooncake, BurstGPT)
 * are read by the load generator's parsers (loadgen's traceRows), the one place that reads them.
 */

/**
 * Median tokens of each class on the Azure 2023 conversation trace, classes cut at its 33rd/66th
 * percentiles (INPUT_CUTS / OUTPUT_CUTS in shared/workload-classes.ts — PAPER.md, DynamoLLM's method).
 */
export const CLASS_MEDIAN_TOKENS = { input: { short: 376, medium: 1018, long: 1510 }, output: { short: 71, medium: 129, long: 407 } } as const;

export interface PoissonOptions {
  ratePerS: number;
  durationS: number;
  cls: WorkloadClass;
  seed: number;
  /** Log-normal spread around the class median (σ of ln); 0 = every request at the median. Default 0.25. */
  spread?: number;
}

/** Seeded Poisson arrivals of one workload class. */
export function poissonClassWorkload(o: PoissonOptions): WorkloadRequest[] {
  const rng = createRng(o.seed);
  const [i, out] = o.cls.split("-") as [Length, Length];
  const sigma = o.spread ?? 0.25;
  const draw = (median: number) => Math.max(1, Math.round(median * Math.exp(sigma * rng.normal())));
  const w: WorkloadRequest[] = [];
  for (let t = 0, k = 0; ; k++) {
    t += (-Math.log(1 - rng.next()) / o.ratePerS) * 1000;
    if (t >= o.durationS * 1000) break;
    w.push({ id: `${o.cls}-${k}`, arrivalMs: t, promptTokens: draw(CLASS_MEDIAN_TOKENS.input[i]), outputTokens: draw(CLASS_MEDIAN_TOKENS.output[out]) });
  }
  return w;
}

/**
 * `n` requests all arriving at t = 0 with log-normal lengths: a saturating, closed-batch load
 * for steady-state measurements at a given max batch (ML.ENERGY-style).
 */
export function burstWorkload(n: number, o: { promptMedian: number; outputMedian: number; seed: number; spread?: number }): WorkloadRequest[] {
  const rng = createRng(o.seed);
  const sigma = o.spread ?? 0.5;
  const draw = (median: number) => Math.max(1, Math.round(median * Math.exp(sigma * rng.normal())));
  return Array.from({ length: n }, (_, k) => ({ id: `b${k}`, arrivalMs: 0, promptTokens: Math.min(4000, draw(o.promptMedian)), outputTokens: Math.min(2000, draw(o.outputMedian)) }));
}
