import { COUNTER_JITTER_MJ, energyMjOf, type GpuSamples } from "../mod.ts";

/**
 * Energy of one GPU over one window, from its samples. Pure.
 *
 * The window spans from the reading that closed the previous window (`energyStartMj` at
 * `startTMs`) to its own last sample. With a counter, energy is the sum of the counter's deltas.
 * A delta that is negative (the counter restarted: driver reload, GPU reset) or implausibly large
 * (a glitch) is never taken as energy: that interval is integrated from power instead, and the
 * event counted. Without a counter (NVML NOT_SUPPORTED), power is integrated (trapezoids; the
 * interval before the first sample is held at the first sample's power).
 */
export interface GpuWindowEnergy {
  energyMj: number;
  method: "counter" | "integrated" | "mixed";
  /** Counter deltas that were negative (resets) or implausible (glitches). */
  resets: number;
  /** First and last time covered, epoch ms. */
  fromMs: number;
  toMs: number;
}

/** No GPU made draws 2 kW (H100 SXM 700 W, B200 1 kW, GB300 1.4 kW): a faster counter is a glitch. */
export const MAX_PLAUSIBLE_GPU_POWER_MW = 2_000_000;

export function gpuWindowEnergy(g: GpuSamples): GpuWindowEnergy {
  const n = g.tMs.length;
  if (n === 0) return { energyMj: 0, method: "integrated", resets: 0, fromMs: g.startTMs ?? 0, toMs: g.startTMs ?? 0 };
  const fromMs = g.startTMs ?? g.tMs[0]!;
  const toMs = g.tMs[n - 1]!;
  const counter = g.energyMj;
  if (counter === undefined || g.energyStartMj === undefined) {
    let e = 0;
    let prevT = fromMs;
    let prevP = g.startPowerMw ?? g.powerMw[0]!;
    for (let i = 0; i < n; i++) {
      e += segment(prevT, prevP, g.tMs[i]!, g.powerMw[i]!);
      prevT = g.tMs[i]!;
      prevP = g.powerMw[i]!;
    }
    return { energyMj: e, method: "integrated", resets: 0, fromMs, toMs };
  }
  let e = 0;
  let resets = 0;
  let prevE = g.energyStartMj;
  let prevT = fromMs;
  let prevP = g.startPowerMw ?? g.powerMw[0]!;
  for (let i = 0; i < n; i++) {
    const t = g.tMs[i]!;
    const d = counter[i]! - prevE;
    const dt = Math.max(0, t - prevT);
    if (d < 0 && d >= -COUNTER_JITTER_MJ) {
      // A step back this small is a counter's jitter, not a restart (which goes back to near 0): no
      // energy, and the baseline stays at the higher reading, or the step would be counted twice.
      prevT = t;
      prevP = g.powerMw[i]!;
      continue;
    }
    // Counters update every 20–100 ms: allow one update period of slack before calling a delta implausible.
    if (d < 0 || d > energyMjOf(MAX_PLAUSIBLE_GPU_POWER_MW, dt + 100)) {
      resets++;
      e += segment(prevT, prevP, t, g.powerMw[i]!);
    } else {
      e += d;
    }
    prevE = counter[i]!;
    prevT = t;
    prevP = g.powerMw[i]!;
  }
  return { energyMj: e, method: resets > 0 ? "mixed" : "counter", resets, fromMs, toMs };
}

/** Trapezoid between two samples, mJ. */
function segment(t0: number, p0: number, t1: number, p1: number): number {
  const dt = t1 - t0;
  return dt > 0 ? energyMjOf((p0 + p1) / 2, dt) : 0;
}
