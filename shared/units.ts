/**
 * Units live in names (`powerMw`, `energyMj`, `tMs`). These helpers are the only place where a
 * unit changes, so a factor of 1000 is never written inline.
 */
export const MJ_PER_J = 1000; // millijoules per joule
export const MW_PER_W = 1000; // milliwatts per watt
export const J_PER_WH = 3600;
export const NS_PER_MS = 1e6;

export const mjToJ = (mj: number): number => mj / MJ_PER_J;
export const jToMj = (j: number): number => j * MJ_PER_J;
export const mwToW = (mw: number): number => mw / MW_PER_W;
export const wToMw = (w: number): number => w * MW_PER_W;
export const jToWh = (j: number): number => j / J_PER_WH;

/** Energy (mJ) of a constant power (mW) held for a duration (ms): mW · ms = µJ, so divide by 1000. */
export const energyMjOf = (powerMw: number, durMs: number): number => (powerMw * durMs) / 1e3;

/** Wall clock in epoch milliseconds with sub-millisecond resolution, anchored once to Date.now(). */
export interface Clock {
  /** Epoch ms, monotonic (never steps back), sub-ms resolution. */
  nowMs(): number;
}

export function systemClock(): Clock {
  // performance.timeOrigin + performance.now() is monotonic and anchored to the wall clock at start.
  const origin = performance.timeOrigin;
  return { nowMs: () => origin + performance.now() };
}
