import type { GpuSpec } from "./catalog.ts";
import { phasesTimeMs, stepPhases, type Phase, type PerfContext, type StepWork } from "./perf-model.ts";

/**
 * Power of one GPU, W, as a function of what its kernels do and of the SM clock:
 *   P = P_idle + s(f)·(P_sm + P_tensor·u_compute + P_onchip·u_mem) + P_hbm·u_mem
 * plus leakage P_leak·(V(f)/V_max)² while the engine steps, where s(f) = (f/f_max)·(V(f)/V_max)² is
 * the CMOS dynamic-power scaling (P ∝ C·V²·f: super-linear in the clock, since V rises with f) and u
 * are the busy shares from the perf model. HBM power does not follow the SM clock. Because decode is
 * memory-bound, lowering f cuts s(f)-scaled power a lot while its speed barely changes.
 * The step's average power is held under the power limit by throttling the clock (as the driver does,
 * averaging over its control window, which is longer than one kernel).
 */

// H100 SXM figures. Not published by NVIDIA except TDP; fitted to the ML.ENERGY leaderboard v3 H100
// points in PAPER.md (486 W at Llama 3.1 8B batch 8 — a memory-bound decode — up to 688–691 W at
// batch 256–512), within the ranges below.
/** Idle power of an H100 SXM5 with a model loaded, clocks up, no kernels: nvidia-smi readings 60–90 W. */
export const H100_IDLE_W = 75;
/**
 * Leakage of the powered-up die while the engine runs, W at V_max: static power grows with the
 * core voltage (≈ V², the usual first-order fit over a DVFS range) but not with the clock, so it is
 * the part of the power that a lower clock does not save per unit of time and that a slower step
 * spends for longer. Carved out of the SM-active share below (their sum is what the ML.ENERGY points
 * fit at max clock). NVIDIA publishes no H100 leakage figure: 70 W (10–15% of a loaded GPU) is an
 * assumption, chosen with the V–F curve below to meet the clock trends in PAPER.md.
 */
export const H100_LEAKAGE_W = 70;
/** SM clock tree, schedulers, register files while kernels run (any kind), at max clock/voltage. */
export const H100_SM_ACTIVE_W = 220 - H100_LEAKAGE_W;
/** Additional tensor-core power at 100% tensor utilization, max clock (a dense GEMM alone exceeds the 700 W TDP). */
export const H100_TENSOR_W = 500;
/** On-chip data movement (L2, NoC, load/store units) at full HBM bandwidth, max clock; scales with s(f). */
export const H100_ONCHIP_MEM_W = 130;
/** HBM3 device + PHY power at full bandwidth (~4–5 pJ/bit × 3.35 TB/s ≈ 110–135 W); SM-clock-independent. */
export const H100_HBM_W = 120;
/** NVLink SerDes while all-reducing (NVLink4 ≈ 10–20 W per GPU active). */
export const NVLINK_ACTIVE_W = 15;

/**
 * Relative core voltage at a given clock. Not published for H100; shape from typical GPU V–F curves
 * (a floor at low clocks, then convex: the last few hundred MHz cost the most voltage):
 *   V/V_max = floor up to VOLTAGE_FLOOR_UNTIL_MHZ, then floor + (1 − floor)·x^VOLTAGE_CURVE_EXPONENT,
 *   x = (f − f_floor)/(f_max − f_floor).
 * With the leakage term above, this puts the power drop at 1.6 GHz near the paper's "up to ~20%"
 * (busy power −20 to −25%) and makes power flatten below ~1.2 GHz, where slower steps then cost
 * more energy than the lower power saves (finding 1; DynamoLLM's cheapest Llama2-70B class runs at 1.2 GHz).
 */
export const VOLTAGE_FLOOR = 0.65;
export const VOLTAGE_FLOOR_UNTIL_MHZ = 900;
export const VOLTAGE_CURVE_EXPONENT = 1.5;

export interface PowerParams {
  idleW: number;
  /** Leakage at V_max while the engine steps; scaled by (V/V_max)². */
  leakageW: number;
  smActiveW: number;
  tensorW: number;
  onchipMemW: number;
  hbmW: number;
  nvlinkW: number;
}

/** Power constants for a GPU: H100 values, scaled by TDP for other GPUs (A100: rough, documented gap). */
export function powerParams(g: GpuSpec): PowerParams {
  const k = g.tdpW / 700;
  return { idleW: H100_IDLE_W * (g.id === "h100-sxm" ? 1 : 0.8), leakageW: H100_LEAKAGE_W * k, smActiveW: H100_SM_ACTIVE_W * k, tensorW: H100_TENSOR_W * k, onchipMemW: H100_ONCHIP_MEM_W * k, hbmW: H100_HBM_W * k, nvlinkW: NVLINK_ACTIVE_W };
}

/** V(f)/V_max: the floor up to VOLTAGE_FLOOR_UNTIL_MHZ, then linear to 1 at f_max. */
export function voltageFrac(g: GpuSpec, smMhz: number): number {
  const span = g.maxSmClockMhz - VOLTAGE_FLOOR_UNTIL_MHZ;
  return smMhz <= VOLTAGE_FLOOR_UNTIL_MHZ ? VOLTAGE_FLOOR : VOLTAGE_FLOOR + (1 - VOLTAGE_FLOOR) * Math.pow((smMhz - VOLTAGE_FLOOR_UNTIL_MHZ) / span, VOLTAGE_CURVE_EXPONENT);
}

/** s(f) = (f/f_max)·(V(f)/V_max)², 1 at max clock. */
export function dynamicScale(g: GpuSpec, smMhz: number): number {
  const v = voltageFrac(g, smMhz);
  return (smMhz / g.maxSmClockMhz) * v * v;
}

/** Power of one phase, W, given s(f) (`scale`) and (V/V_max)² (`vSq`). */
export function phasePowerW(p: PowerParams, scale: number, vSq: number, ph: Phase): number {
  const base = p.idleW + p.leakageW * vSq;
  switch (ph.kind) {
    case "host":
      // GPU waits for the scheduler; only small kernels run.
      return base + scale * 0.3 * p.smActiveW;
    case "comm":
      return base + scale * 0.5 * p.smActiveW + p.nvlinkW + p.hbmW * ph.memUtil;
    default:
      return base + scale * (p.smActiveW + p.tensorW * ph.computeUtil + p.onchipMemW * ph.memUtil) + p.hbmW * ph.memUtil;
  }
}

export interface StepCost {
  durationMs: number;
  /** Average power of each GPU of the instance over the step, W. */
  powerW: number;
  /** The clock the step ran at (below the locked clock when the power limit throttled it). */
  smClockMhz: number;
  /** Share of the step the tensor cores / HBM were busy (for DCGM-like utilization metrics). */
  busyShare: number;
}

export interface KnobSettings {
  smClockMhz: number;
  powerLimitW: number;
}

function costAt(ctx: PerfContext, p: PowerParams, w: StepWork, smMhz: number): StepCost {
  const phases = stepPhases(ctx, w, smMhz);
  const t = phasesTimeMs(phases);
  const scale = dynamicScale(ctx.gpu, smMhz);
  const v = voltageFrac(ctx.gpu, smMhz);
  let e = 0;
  let busy = 0;
  for (const ph of phases) {
    e += phasePowerW(p, scale, v * v, ph) * ph.timeMs;
    if (ph.kind !== "host") busy += ph.timeMs;
  }
  return { durationMs: t, powerW: t > 0 ? e / t : p.idleW, smClockMhz: smMhz, busyShare: t > 0 ? busy / t : 0 };
}

/**
 * Duration and power of one step. If the average power at the locked clock exceeds the power limit,
 * the clock steps down through the supported clocks (binary search) until it fits, as the GPU's
 * power-capping firmware does.
 */
export function stepCost(ctx: PerfContext, p: PowerParams, w: StepWork, knobs: KnobSettings): StepCost {
  const first = costAt(ctx, p, w, knobs.smClockMhz);
  if (first.powerW <= knobs.powerLimitW) return first;
  const clocks = ctx.gpu.supportedSmClocksMhz.filter((f) => f < knobs.smClockMhz); // descending
  let lo = 0;
  let hi = clocks.length - 1;
  let best: StepCost | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const c = costAt(ctx, p, w, clocks[mid]!);
    if (c.powerW <= knobs.powerLimitW) {
      best = c;
      hi = mid - 1;
    } else lo = mid + 1;
  }
  return best ?? costAt(ctx, p, w, clocks[clocks.length - 1] ?? knobs.smClockMhz);
}
