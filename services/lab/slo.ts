import { simulate } from "../simnode/mod.ts";
import type { WorkloadClass } from "../../shared/workload-classes.ts";
import type { SloSpec } from "./matrix.ts";
import type { SloThresholds } from "./metrics.ts";
import { classMedianTokens } from "./workload.ts";

/**
 * SLO thresholds of a model and class: absolute when the matrix gives them, otherwise `factor` ×
 * the latency of one median request of the class served alone on the reference configuration
 * (DynamoLLM: 5× the latency of a request served alone), computed with the simulated node — the
 * same for every mode, so library and real-time sweeps judge points alike.
 */
export function sloThresholds(slo: SloSpec, model: string, gpu: string, cls: WorkloadClass): SloThresholds {
  let alone: { ttftMs: number; tpotMs: number } | undefined;
  const ref = () => (alone ??= aloneLatency(model, gpu, cls, slo.reference.tp, slo.reference.smClockMhz));
  return {
    ttftMs: slo.ttftMs ?? slo.factor * ref().ttftMs,
    tpotMs: slo.tpotMs ?? slo.factor * ref().tpotMs,
    attainment: slo.attainment,
  };
}

export function aloneLatency(model: string, gpu: string, cls: WorkloadClass, tp: number, smClockMhz: number): { ttftMs: number; tpotMs: number } {
  const m = classMedianTokens(cls);
  const r = simulate([{ arrivalMs: 0, promptTokens: m.prompt, outputTokens: m.output }], { model, gpuModel: gpu, gpus: tp, tp, smClockMhz, sampleIntervalMs: 0 });
  const q = r.requests[0]!;
  return { ttftMs: q.ttftMs, tpotMs: q.meanItlMs };
}
