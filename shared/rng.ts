/**
 * Seeded pseudo-random numbers (mulberry32): every synthetic workload and sample is reproducible
 * from its seed, on any machine. Not for cryptography.
 */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Exponential with mean 1. */
  exp(): number;
  /** Gamma with the given shape and mean 1 (Marsaglia–Tsang). */
  gamma(shape: number): number;
  /** Integer uniform in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number;
  /** Standard normal (mean 0, sd 1). */
  normal(): number;
}

export function createRng(seed: number): Rng {
  let a = (seed | 0) ^ 0x9e3779b9;
  const next = (): number => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = (): number => {
    // Box–Muller; 1 - u keeps the log argument in (0, 1].
    const u = 1 - next();
    const v = next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  const gammaUnitScale = (k: number): number => {
    if (k < 1) return gammaUnitScale(k + 1) * Math.pow(1 - next(), 1 / k);
    const d = k - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = 1 - next();
      if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
    }
  };
  return {
    next,
    exp: () => -Math.log(1 - next()),
    gamma: (shape) => gammaUnitScale(shape) / shape,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    normal,
  };
}

/** A 32-bit hash of a string (FNV-1a), to derive seeds from names (and per-request streams from a seed). */
export function hash32(s: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
