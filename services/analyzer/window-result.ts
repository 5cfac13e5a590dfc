import type { PowerBatch, RequestEnergy, WorkWindow } from "../../shared/mod.ts";
import type { WindowAttribution } from "../../shared/energy/mod.ts";
import type { RequestAcc } from "./join-state.ts";
import type { WorkItem } from "../../shared/mod.ts";

/** One instance-window's energy split among its requests (attribution.ts's rules, configured). */
export type AttributeFn = (energyMj: number, requests: readonly WorkItem[], instance: string) => WindowAttribution;
import { gpuWindowEnergy, staticParts, type GpuWindowEnergy } from "../../shared/energy/mod.ts";

/**
 * What a closed window yields, and what a finished request is: pure functions of their inputs, the
 * part of the join a reader checks against the attribution rule (README: How energy is attributed).
 */
export interface GpuWindowResult extends GpuWindowEnergy {
  gpu: number;
  uuid: string;
}

export interface NodeWindowResult {
  node: string;
  windowStartMs: number;
  windowEndMs: number;
  measuredMj: number;
  attributedMj: number;
  idleMj: number;
  /** Energy of GPUs that belong to no instance (counted in idleMj too). */
  unassignedMj: number;
  incomplete: boolean;
  gpus: GpuWindowResult[];
  power?: PowerBatch;
}

export interface InstanceWindowResult {
  node: string;
  instance: string;
  model?: string;
  windowStartMs: number;
  windowEndMs: number;
  gpus: number[];
  energyMj: number;
  attributedMj: number;
  idleMj: number;
  prefillTokens: number;
  decodeTokens: number;
  activeRequests: number;
  inFlight: number;
  incomplete: boolean;
}

export interface RequestShare {
  requestId: string;
  instance: string;
  energyMj: number;
  prefillMj: number;
  decodeMj: number;
  /** Of energyMj: its part of the GPUs' static (idle) power over the window; only with `staticPowerW`. */
  staticMj?: number;
}

/**
 * A closed window's results: per GPU the counter (or integrated) energy; per instance its GPUs'
 * energy split among its requests by their work (attribution.ts), or idle; GPUs no instance names
 * are idle and "unassigned". Instances in a fixed order, and a GPU counted for the first instance
 * that names it, so the result does not depend on the order messages came in.
 */
export function attributeClosedWindow(
  w: { node: string; start: number; end: number; power?: PowerBatch; work: ReadonlyMap<string, WorkWindow> },
  incomplete: boolean,
  attribute: AttributeFn,
  /** Static (idle) power of one GPU, W: each share's part of it is reported apart (staticParts). */
  staticPowerW?: number,
): { nodeWindow: NodeWindowResult; instanceWindows: InstanceWindowResult[]; shares: RequestShare[] } {
  const gpuEnergy = new Map<number, GpuWindowResult>();
  for (const g of w.power?.gpus ?? []) gpuEnergy.set(g.gpu, { gpu: g.gpu, uuid: g.uuid, ...gpuWindowEnergy(g) });
  let measuredMj = 0;
  for (const g of gpuEnergy.values()) measuredMj += g.energyMj;
  const assigned = new Set<number>();
  const instanceWindows: InstanceWindowResult[] = [];
  const out: RequestShare[] = [];
  let attributed = 0;
  let idle = 0;
  for (const work of [...w.work.values()].sort((a, b) => (a.instance < b.instance ? -1 : 1))) {
    const energyMj = work.gpus.reduce((s, g) => (assigned.has(g) ? s : (assigned.add(g), s + (gpuEnergy.get(g)?.energyMj ?? 0))), 0);
    const { shares, idleMj } = attribute(energyMj, work.requests, work.instance);
    // W × ms = mJ, for each of the instance's GPUs.
    const statics = staticPowerW !== undefined ? staticParts(shares, staticPowerW * work.gpus.length * (w.end - w.start)) : undefined;
    let prefillTokens = 0;
    let decodeTokens = 0;
    shares.forEach((s, k) => {
      prefillTokens += s.prefillTokens;
      decodeTokens += s.decodeTokens;
      attributed += s.energyMj;
      out.push({ requestId: s.requestId, instance: work.instance, energyMj: s.energyMj, prefillMj: s.prefillMj, decodeMj: s.decodeMj, ...(statics ? { staticMj: statics[k]! } : {}) });
    });
    idle += idleMj;
    instanceWindows.push({
      node: w.node,
      instance: work.instance,
      ...(work.model ? { model: work.model } : {}),
      windowStartMs: w.start,
      windowEndMs: w.end,
      gpus: work.gpus,
      energyMj,
      attributedMj: energyMj - idleMj,
      idleMj,
      prefillTokens,
      decodeTokens,
      activeRequests: shares.length,
      inFlight: work.inFlight ?? shares.length,
      incomplete,
    });
  }
  let unassignedMj = 0;
  for (const [g, e] of gpuEnergy) if (!assigned.has(g)) unassignedMj += e.energyMj;
  idle += unassignedMj;
  const nodeWindow: NodeWindowResult = {
    node: w.node,
    windowStartMs: w.start,
    windowEndMs: w.end,
    measuredMj,
    attributedMj: attributed,
    idleMj: idle,
    unassignedMj,
    incomplete,
    gpus: [...gpuEnergy.values()],
    ...(w.power ? { power: w.power } : {}),
  };
  return { nodeWindow, instanceWindows, shares: out };
}

/** The ENERGY record of a finished (or given-up) request. */
export function energyRecord(a: RequestAcc, incomplete: boolean): RequestEnergy {
  const end = a.end;
  return {
    v: 1,
    kind: "energy",
    msgId: `${a.node}:energy:${a.requestId}`,
    node: a.node,
    instance: a.instance ?? a.start?.instance ?? end?.instance ?? "unknown",
    requestId: a.requestId,
    ...(a.start?.model ? { model: a.start.model } : {}),
    ...(a.start?.workloadClass ? { workloadClass: a.start.workloadClass } : {}),
    ...(a.start?.runId ? { runId: a.start.runId } : {}),
    startMs: a.start?.tMs ?? end?.tMs ?? a.lastWorkMs,
    endMs: end?.tMs ?? a.lastWorkMs,
    status: end?.status ?? "error",
    promptTokens: end?.promptTokens ?? 0,
    outputTokens: end?.outputTokens ?? 0,
    energyMj: a.energyMj,
    prefillEnergyMj: a.prefillMj,
    decodeEnergyMj: a.decodeMj,
    idleShareMj: 0,
    ...(a.staticMj !== undefined ? { staticEnergyMj: a.staticMj, activeEnergyMj: Math.max(0, a.energyMj - a.staticMj) } : {}),
    windows: a.windows,
    // Output tokens but no window that carried them: its energy is missing, not zero.
    incomplete: incomplete || a.incomplete || !a.start || !end || (a.windows === 0 && (end?.outputTokens ?? 0) > 0),
    config: {},
  };
}
