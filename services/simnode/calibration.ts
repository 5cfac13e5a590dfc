import { simulate, type SimulationOptions, type StepRecord } from "./library.ts";
import { burstWorkload } from "./workloads.ts";

/**
 * The eight measured H100 points of the ML.ENERGY leaderboard v3 (PAPER.md; vLLM 0.11.1, chat
 * workload, BF16; energy per output token over the steady state; power summed over the GPUs), and
 * how the model is measured the same way: a saturating burst of chat-like requests at the given max
 * batch, figures taken over the steady state (between 20% and 70% of requests finished, when the
 * batch is full and the queue is not yet empty).
 */
export interface MeasuredPoint {
  label: string;
  model: string;
  gpus: number;
  maxBatch: number;
  jPerOutputToken: number;
  totalPowerW: number;
  medianItlMs: number;
}

export const ML_ENERGY_H100: readonly MeasuredPoint[] = [
  { label: "Llama 3.1 8B ×1 b8", model: "llama-3.1-8b", gpus: 1, maxBatch: 8, jPerOutputToken: 0.455, totalPowerW: 486, medianItlMs: 7.3 },
  { label: "Llama 3.1 8B ×1 b64", model: "llama-3.1-8b", gpus: 1, maxBatch: 64, jPerOutputToken: 0.119, totalPowerW: 610, medianItlMs: 11.5 },
  { label: "Llama 3.1 8B ×1 b256", model: "llama-3.1-8b", gpus: 1, maxBatch: 256, jPerOutputToken: 0.077, totalPowerW: 691, medianItlMs: 26.1 },
  { label: "Llama 3.1 8B ×1 b512", model: "llama-3.1-8b", gpus: 1, maxBatch: 512, jPerOutputToken: 0.07, totalPowerW: 688, medianItlMs: 47.4 },
  { label: "Llama 3.1 70B TP4 b8", model: "llama-3.1-70b", gpus: 4, maxBatch: 8, jPerOutputToken: 3.759, totalPowerW: 1765, medianItlMs: 16.6 },
  { label: "Llama 3.1 70B TP4 b64", model: "llama-3.1-70b", gpus: 4, maxBatch: 64, jPerOutputToken: 0.797, totalPowerW: 2002, medianItlMs: 22.4 },
  { label: "Llama 3.1 70B TP4 b256", model: "llama-3.1-70b", gpus: 4, maxBatch: 256, jPerOutputToken: 0.479, totalPowerW: 2354, medianItlMs: 39.8 },
  { label: "Llama 3.1 70B TP4 b~900", model: "llama-3.1-70b", gpus: 4, maxBatch: 900, jPerOutputToken: 0.373, totalPowerW: 2548, medianItlMs: 105.6 },
];

/**
 * Chat request lengths assumed for the ML.ENERGY chat workload (not published in PAPER.md):
 * log-normal, median prompt 200 and output 600 tokens (σ = 0.5): short chat prompts, long answers
 * (longer prompts put more prefill energy per output token than the measured points allow). The KV-cache limit at batch 512/900 depends on this choice.
 */
export const CHAT_PROMPT_MEDIAN = 200;
export const CHAT_OUTPUT_MEDIAN = 600;

export interface SteadyState {
  jPerOutputToken: number;
  totalPowerW: number;
  medianItlMs: number;
  meanBatch: number;
}

/** Figures over the steps that lie between two moments (ms), all instances together. */
export function steadyStateOf(steps: readonly StepRecord[], fromMs: number, toMs: number): SteadyState {
  let energyJ = 0;
  let tokens = 0;
  let batchSum = 0;
  const durations: number[] = [];
  for (const s of steps) {
    if (s.startMs < fromMs || s.endMs > toMs) continue;
    energyJ += (s.powerW * s.gpus * (s.endMs - s.startMs)) / 1000;
    tokens += s.tokens;
    batchSum += s.decodeSeqs;
    durations.push(s.endMs - s.startMs);
  }
  durations.sort((a, b) => a - b);
  return { jPerOutputToken: energyJ / tokens, totalPowerW: (energyJ * 1000) / (toMs - fromMs), medianItlMs: durations[durations.length >> 1] ?? NaN, meanBatch: batchSum / Math.max(1, durations.length) };
}

export function measureSteadyState(model: string, gpus: number, maxBatch: number, extra: SimulationOptions = {}, seed = 7): SteadyState {
  const n = Math.max(400, maxBatch * 4);
  const w = burstWorkload(n, { promptMedian: CHAT_PROMPT_MEDIAN, outputMedian: CHAT_OUTPUT_MEDIAN, seed });
  const r = simulate(w, { model, gpus, tp: gpus, maxBatch, sampleIntervalMs: 0, recordSteps: true, ...extra });
  const ends = r.requests.map((q) => q.endMs).sort((a, b) => a - b);
  return steadyStateOf(r.steps!, ends[Math.floor(ends.length * 0.2)]!, ends[Math.floor(ends.length * 0.7)]!);
}
