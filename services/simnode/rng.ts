import { createRng as createSharedRng, hash32 } from "../../shared/rng.ts";

export { hash32 };

/**
 * The simulator's random numbers: the shared seeded stream (mulberry32: same sequence on every run
 * and platform; never Math.random() in the simulator), with the simulator's own normal() draw
 * (u = max(next, 1e-12), then cos of the next), kept so its calibrated outputs do not move.
 */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Standard normal (Box–Muller). */
  normal(): number;
}

export function createRng(seed: number): Rng {
  const { next } = createSharedRng(seed);
  return {
    next,
    normal() {
      const u = Math.max(next(), 1e-12);
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
    },
  };
}

/**
 * Where a request would stop on its own (EOS) when `ignore_eos` is not set: lognormal with median
 * 180 tokens (σ = 0.9), close to the Azure 2023 conversation trace's output lengths (33rd/66th
 * percentiles 94/237 tokens), then clamped to [minTokens, maxTokens].
 */
export const NATURAL_OUTPUT_MEDIAN_TOKENS = 180;
export function naturalOutputTokens(rng: Rng, maxTokens: number, minTokens = 0): number {
  const natural = Math.max(1, Math.round(NATURAL_OUTPUT_MEDIAN_TOKENS * Math.exp(0.9 * rng.normal())));
  return Math.max(1, Math.min(maxTokens, Math.max(minTokens, natural)));
}
