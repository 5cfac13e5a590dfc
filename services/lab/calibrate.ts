import { simulate } from "../simnode/mod.ts";

/**
 * The figures the analyzer's attribution needs for one deployment (model × GPU × TP × clock), from
 * two measurements an operator can make on an instance before it serves (docs/attribution.md):
 *
 * - idle: the instance doing nothing for a while. Its GPUs' counter energy over the time, per GPU,
 *   is their static power (`--static-power-w`).
 * - a prefill burst: a closed burst of prompt-only requests (one output token each) that keeps the
 *   instance busy with prefill alone. Counter energy ÷ prompt tokens is the energy of a prefill
 *   token (`--prefill-mj-per-token`; static power included, as the rule splits the whole window),
 *   and prompt tokens ÷ the burst's time the instance's prefill throughput (`--prefill-tokens-per-s`
 *   of the agent, which spreads a prompt's prefill over the windows before its first token).
 */
export interface CalibrationMeasurements {
  idle: { energyMj: number; durationMs: number; gpus: number };
  burst: { energyMj: number; durationMs: number; promptTokens: number };
}

export interface AttributionCalibration {
  /** Static (idle) power of one GPU, W. */
  staticPowerW: number;
  /** Energy of one prefill token on the instance's GPUs together, mJ. */
  prefillMjPerToken: number;
  /** Prompt tokens the instance prefills a second, when it does nothing else. */
  prefillTokensPerS: number;
}

export function calibrationFrom(m: CalibrationMeasurements): AttributionCalibration {
  const positive = (x: number, what: string) => {
    if (!(x > 0) || !Number.isFinite(x)) throw new RangeError(`calibration: ${what} must be > 0, got ${x}`);
  };
  positive(m.idle.durationMs, "the idle span");
  positive(m.idle.gpus, "the GPU count");
  positive(m.burst.durationMs, "the burst's time");
  positive(m.burst.promptTokens, "the burst's prompt tokens");
  positive(m.burst.energyMj, "the burst's energy");
  if (!(m.idle.energyMj >= 0)) throw new RangeError(`calibration: idle energy must be ≥ 0, got ${m.idle.energyMj}`);
  return {
    // mJ / ms = W.
    staticPowerW: m.idle.energyMj / m.idle.durationMs / m.idle.gpus,
    prefillMjPerToken: m.burst.energyMj / m.burst.promptTokens,
    prefillTokensPerS: (m.burst.promptTokens / m.burst.durationMs) * 1000,
  };
}

export interface SimulatedDeployment {
  model: string;
  gpuModel?: string;
  tp: number;
  smClockMhz?: number;
  maxBatch?: number;
}

/** Burst of the calibration: 64 prompts of 2,048 tokens, one output token each, all at once. */
export const CALIBRATION_BURST = { requests: 64, promptTokens: 2048 } as const;
export const CALIBRATION_IDLE_MS = 10_000;

/** The calibration on the simulated node (library mode): what the same measurements give there. */
export function calibrateSimulated(d: SimulatedDeployment): AttributionCalibration & { measurements: CalibrationMeasurements } {
  const node = { model: d.model, gpus: d.tp, tp: d.tp, sampleIntervalMs: 0, ...(d.gpuModel ? { gpuModel: d.gpuModel } : {}), ...(d.smClockMhz ? { smClockMhz: d.smClockMhz } : {}), ...(d.maxBatch ? { maxBatch: d.maxBatch } : {}) };
  const idle = simulate([], { ...node, untilMs: CALIBRATION_IDLE_MS });
  const burst = simulate(
    Array.from({ length: CALIBRATION_BURST.requests }, (_, k) => ({ id: `cal${k}`, arrivalMs: 0, promptTokens: CALIBRATION_BURST.promptTokens, outputTokens: 1 })),
    node,
  );
  const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
  const measurements: CalibrationMeasurements = {
    idle: { energyMj: sum(idle.gpuEnergyMj), durationMs: idle.durationMs, gpus: d.tp },
    burst: { energyMj: sum(burst.gpuEnergyMj), durationMs: burst.durationMs, promptTokens: CALIBRATION_BURST.requests * CALIBRATION_BURST.promptTokens },
  };
  return { ...calibrationFrom(measurements), measurements };
}
