import { CLASS_MEDIAN_TOKENS, poissonClassWorkload, type WorkloadRequest } from "../simnode/mod.ts";
import type { Length, WorkloadClass } from "../../shared/workload-classes.ts";
import type { PointSpec } from "./matrix.ts";

/**
 * The requests of one point: seeded Poisson arrivals of the class over warmup + measure, token
 * lengths log-normal around the class medians of the Azure conversation trace. Library and
 * real-time modes send the very same requests, and every clock of a class shares them (common
 * random numbers: differences between points are the knob's, not the draw's).
 */
export function classMedianTokens(cls: WorkloadClass): { prompt: number; output: number } {
  const [i, o] = cls.split("-") as [Length, Length];
  return { prompt: CLASS_MEDIAN_TOKENS.input[i], output: CLASS_MEDIAN_TOKENS.output[o] };
}

export function requestRate(p: PointSpec): number {
  if ("requestsPerS" in p.load) return p.load.requestsPerS;
  const m = classMedianTokens(p.workloadClass);
  return p.load.tokensPerS / (m.prompt + m.output);
}

export function pointWorkload(p: PointSpec): WorkloadRequest[] {
  return poissonClassWorkload({ ratePerS: requestRate(p), durationS: p.warmupS + p.measureS, cls: p.workloadClass, seed: p.seed });
}
