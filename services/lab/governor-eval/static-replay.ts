import { azureTrace } from "../../loadgen/mod.ts";
import { H100_SUPPORTED_SM_CLOCKS_MHZ, modelSpec, simulate, type WorkloadRequest } from "../../simnode/mod.ts";

/**
 * The static arm's clock for a pool, chosen the way an operator with the lab would choose a fixed
 * clock: replay the pool's own trace on the simulated node (library mode, simulated time: seconds
 * for an hour) at every candidate clock, and keep the cheapest one whose SLO attainment stays within
 * `slackPts` of the maximum clock's — the bound the governor is held to. The replay sends each node
 * exactly what the load generator will (the same rows, caps and sampling; request i to node i mod
 * n), so the choice sees the trace's bursts, which a steady-load sweep does not (the sweep's choice
 * for the same pools, 795 MHz, keeps 83 % of requests within the SLO on this replay against 98 %).
 * It is hindsight on the very arrivals of the evaluation: the strongest static baseline there is.
 */
/** Which requests a pool's nodes get: the trace as the load generator reads it (speed-up, window in trace ms, share of rows kept, seed). */
export interface PoolTrace {
  trace: string;
  model: string;
  nodes: number;
  speedup: number;
  windowMs: number;
  sample: number;
  seed: number;
}

/** How a node replays them and how they are judged. */
export interface ReplaySim {
  model: string;
  gpus: number;
  speedup: number;
  windowMs: number;
  /** Simulated time after the window's end that still counts (the arm's tail), ms. */
  tailMs: number;
  slo: { ttftSloMs: number; tpotSloMs: number };
}

export interface StaticChoiceOptions extends ReplaySim {
  /** Candidate clocks (default: the H100's supported clocks from `minMhz` up). */
  clocksMhz?: readonly number[];
  minMhz?: number;
  /** Attainment the static clock may lose against the maximum clock's, points. Default 1. */
  slackPts?: number;
}

export interface ReplayRow {
  mhz: number;
  /** Simulated energy of the pool's nodes over the arm, kWh (the simulator's counters). */
  energyKwh: number;
  /** Share of requests that met both SLOs (rejected and unfinished ones count as missed). */
  attainment: number;
  requests: number;
}

export interface ReplayChoice {
  mhz: number;
  rows: ReplayRow[];
  why: string;
}

/** Whether a request met both SLOs by the end of the arm: the load generator's rule (one-token requests have no TPOT). */
export const metSlo = (q: { endMs: number; ttftMs: number; outputTokens: number; meanItlMs: number }, slo: ReplaySim["slo"], untilMs: number) =>
  q.endMs <= untilMs && q.ttftMs <= slo.ttftSloMs && (q.outputTokens <= 1 || q.meanItlMs <= slo.tpotSloMs);

/** The simulated time an arm lasts: the window compressed, then the tail. */
export const replayUntilMs = (o: Pick<ReplaySim, "windowMs" | "speedup" | "tailMs">) => o.windowMs / o.speedup + o.tailMs;

/** Each node's share of the pool's trace, as the load generator deals it (request i to node i mod n). */
export async function poolWorkloads(o: PoolTrace): Promise<WorkloadRequest[][]> {
  const maxContext = modelSpec(o.model).maxContext;
  const maxOutputTokens = Math.min(1024, Math.floor(maxContext / 4));
  const per: WorkloadRequest[][] = Array.from({ length: o.nodes }, () => []);
  let i = 0;
  for await (const r of azureTrace(o.trace, { speedup: o.speedup, windowMs: o.windowMs, sample: o.sample, seed: o.seed, maxPromptTokens: maxContext - maxOutputTokens, maxOutputTokens })) {
    const mine = per[i++ % o.nodes]!;
    mine.push({ id: `r${mine.length}`, arrivalMs: r.offsetMs, promptTokens: r.promptTokens, outputTokens: r.outputTokens });
  }
  return per;
}

/**
 * One node's requests replayed at `mhz` (or from it along `schedule`): its energy over the arm and
 * the ids of the requests that missed the SLO (rejected and unfinished ones included).
 */
export function replayNode(w: readonly WorkloadRequest[], mhz: number, o: ReplaySim, schedule?: readonly { atMs: number; smClockMhz: number }[]): { energyKwh: number; missed: Set<string> } {
  const untilMs = replayUntilMs(o);
  const r = simulate(w, { model: o.model, gpus: o.gpus, tp: o.gpus, smClockMhz: mhz, sampleIntervalMs: 1000, untilMs, ...(schedule ? { clockSchedule: schedule } : {}) });
  const k = r.samples.tMs.findLastIndex((t) => t <= untilMs);
  let energyMj = 0;
  if (k > 0) for (const e of r.samples.energyMj) energyMj += e[k]! - e[0]!;
  const missed = new Set(r.rejected.map((x) => x.id));
  for (const q of r.requests) if (!metSlo(q, o.slo, untilMs)) missed.add(q.id);
  return { energyKwh: energyMj / 3.6e9, missed };
}

/** The pool replayed at one clock: energy and attainment over all its nodes. */
export function replayAt(per: readonly WorkloadRequest[][], mhz: number, o: ReplaySim): ReplayRow {
  let energyKwh = 0, missed = 0, n = 0;
  for (const w of per) {
    const r = replayNode(w, mhz, o);
    energyKwh += r.energyKwh;
    missed += r.missed.size;
    n += w.length;
  }
  return { mhz, energyKwh, attainment: n > 0 ? 1 - missed / n : 0, requests: n };
}

/** The static clock for a pool whose nodes get `per` (poolWorkloads). */
export function chooseStaticByReplay(per: readonly WorkloadRequest[][], o: StaticChoiceOptions): ReplayChoice {
  const clocks = [...new Set(o.clocksMhz ?? H100_SUPPORTED_SM_CLOCKS_MHZ.filter((f) => f >= (o.minMhz ?? 0)))].sort((a, b) => b - a);
  if (clocks.length === 0) throw new Error("static replay: no candidate clock");
  const rows = clocks.map((f) => replayAt(per, f, o));
  const top = rows[0]!;
  const bound = top.attainment - (o.slackPts ?? 1) / 100;
  const ok = rows.filter((x) => x.attainment >= bound);
  const best = ok.reduce((a, b) => (b.energyKwh < a.energyKwh ? b : a), top);
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  return {
    mhz: best.mhz, rows,
    why: `replay of the pool's trace: ${best.mhz} MHz keeps ${pct(best.attainment)} within the SLO (maximum clock ${pct(top.attainment)}) at ${best.energyKwh.toFixed(4)} kWh simulated (maximum ${top.energyKwh.toFixed(4)})`,
  };
}
