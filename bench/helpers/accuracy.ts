import type { RequestEnergy } from "../../shared/mod.ts";
import { createWindowJoin, type JoinOptions } from "../../services/analyzer/mod.ts";
import type { LedgerSnapshot } from "../../services/simnode/mod.ts";
import { classify } from "../../services/loadgen/mod.ts";
import type { ObservedNode } from "./observed-node.ts";

/**
 * Per-request energy as the analyzer's join stores it, against the simulator's ledger: relative
 * error |stored − ledger| / ledger of each request's total (active + static) energy, its quantiles
 * overall and per workload class, and the join's conservation over the run.
 */
export interface Accuracy {
  requests: number;
  /** Requests the join stored that the ledger knows (all of them, unless something is broken). */
  matched: number;
  medianPct: number;
  p90Pct: number;
  p99Pct: number;
  /** Median of the signed error (stored − ledger)/ledger: + over-attributes, − under. */
  biasPct: number;
  /** Median error per workload class (input × output length at the Azure conversation cuts). */
  byClass: Record<string, { n: number; medianPct: number; p90Pct: number }>;
  /** Σ stored request energy over Σ ledger request energy, −1, %: where the idle energy went. */
  totalPct: number;
  /** Largest |Σ attributed + idle − measured| / measured over the run's windows (the join's own invariant). */
  conservation: number;
  /** With the static power given: the stored static and active parts against the ledger's, each as total is. */
  staticPart?: { medianPct: number; p90Pct: number; totalPct: number };
  activePart?: { medianPct: number; p90Pct: number; totalPct: number };
}

export interface JoinRun {
  stored: RequestEnergy[];
  instanceWindows: { energyMj: number; prefillTokens: number; decodeTokens: number }[];
  measuredMj: number;
  attributedMj: number;
  idleMj: number;
  conservation: number;
}

/** Runs the analyzer's join over what the agent published, as a replay does: everything in, then flush. */
export function runJoin(obs: ObservedNode, opts: JoinOptions): JoinRun {
  const join = createWindowJoin<undefined>(opts);
  const stored: RequestEnergy[] = [];
  const instanceWindows: JoinRun["instanceWindows"] = [];
  let measuredMj = 0;
  let attributedMj = 0;
  let idleMj = 0;
  let conservation = 0;
  const take = (o: ReturnType<typeof join.drain>) => {
    stored.push(...o.requests);
    for (const w of o.instanceWindows) instanceWindows.push({ energyMj: w.energyMj, prefillTokens: w.prefillTokens, decodeTokens: w.decodeTokens });
    for (const w of o.nodeWindows) {
      measuredMj += w.measuredMj;
      attributedMj += w.attributedMj;
      idleMj += w.idleMj;
      if (w.measuredMj > 0) conservation = Math.max(conservation, Math.abs(w.attributedMj + w.idleMj - w.measuredMj) / w.measuredMj);
    }
  };
  // Streams interleaved in time order, as a live node's arrive: events and windows by their end.
  const workAt = new Map<number, ObservedNode["work"]>();
  for (const w of obs.work) {
    let list = workAt.get(w.windowStartMs);
    if (!list) workAt.set(w.windowStartMs, (list = []));
    list.push(w);
  }
  let e = 0;
  for (let k = 0; k < obs.power.length; k++) {
    const p = obs.power[k]!;
    while (e < obs.events.length && obs.events[e]!.tMs <= p.windowEndMs) join.addRequest(obs.events[e++]!, undefined);
    join.addPower(p, undefined);
    for (const w of workAt.get(p.windowStartMs) ?? []) join.addWork(w, undefined);
    if (k % 16 === 0) take(join.drain());
  }
  while (e < obs.events.length) join.addRequest(obs.events[e++]!, undefined);
  take(join.drain());
  take(join.flush());
  return { stored, instanceWindows, measuredMj, attributedMj, idleMj, conservation };
}

const quantile = (sorted: readonly number[], q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
const pct = (x: number) => +(100 * x).toFixed(2);

export function accuracy(run: JoinRun, ledger: LedgerSnapshot, storedMj: (r: RequestEnergy) => number = (r) => r.energyMj): Accuracy {
  const truth = new Map(ledger.requests.map((r) => [r.requestId, r]));
  const errors: number[] = [];
  const signed: number[] = [];
  const byClass = new Map<string, number[]>();
  let storedSum = 0;
  let truthSum = 0;
  for (const s of run.stored) {
    const t = truth.get(s.requestId);
    if (!t || !(t.totalMj > 0)) continue;
    const d = (storedMj(s) - t.totalMj) / t.totalMj;
    errors.push(Math.abs(d));
    signed.push(d);
    storedSum += storedMj(s);
    truthSum += t.totalMj;
    const cls = classify(s.promptTokens, s.outputTokens);
    let list = byClass.get(cls);
    if (!list) byClass.set(cls, (list = []));
    list.push(Math.abs(d));
  }
  errors.sort((a, b) => a - b);
  signed.sort((a, b) => a - b);
  const part = (stored: (r: RequestEnergy) => number | undefined, truthOf: (t: LedgerSnapshot["requests"][number]) => number) => {
    const errs: number[] = [];
    let s = 0;
    let t = 0;
    for (const r of run.stored) {
      const x = stored(r);
      const l = truth.get(r.requestId);
      if (x === undefined || !l || !(truthOf(l) > 0)) continue;
      errs.push(Math.abs(x - truthOf(l)) / truthOf(l));
      s += x;
      t += truthOf(l);
    }
    errs.sort((a, b) => a - b);
    return errs.length === 0 ? undefined : { medianPct: pct(quantile(errs, 0.5)), p90Pct: pct(quantile(errs, 0.9)), totalPct: pct(s / t - 1) };
  };
  const staticPart = part((r) => r.staticEnergyMj, (l) => l.staticMj);
  const activePart = part((r) => r.activeEnergyMj, (l) => l.activeMj);
  const classes: Accuracy["byClass"] = {};
  for (const [cls, list] of [...byClass].sort(([a], [b]) => (a < b ? -1 : 1))) {
    list.sort((a, b) => a - b);
    classes[cls] = { n: list.length, medianPct: pct(quantile(list, 0.5)), p90Pct: pct(quantile(list, 0.9)) };
  }
  return {
    requests: ledger.requests.length,
    matched: errors.length,
    medianPct: pct(quantile(errors, 0.5)),
    p90Pct: pct(quantile(errors, 0.9)),
    p99Pct: pct(quantile(errors, 0.99)),
    biasPct: pct(quantile(signed, 0.5)),
    byClass: classes,
    totalPct: pct(storedSum / truthSum - 1),
    conservation: run.conservation,
    ...(staticPart ? { staticPart } : {}),
    ...(activePart ? { activePart } : {}),
  };
}
