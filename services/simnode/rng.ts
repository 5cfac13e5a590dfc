/**
 * Seeded pseudo-random numbers (mulberry32): a seed gives the same sequence on every run and
 * platform. Never Math.random() in the simulator.
 */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Standard normal (Box–Muller). */
  normal(): number;
}

export function createRng(seed: number): Rng {
  let a = (Math.trunc(seed) ^ 0x9e3779b9) >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    normal() {
      const u = Math.max(next(), 1e-12);
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
    },
  };
}

/** FNV-1a 32-bit hash of a string, to derive per-request streams from a seed. */
export function hash32(s: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
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
