import type { PointRow } from "./metrics.ts";

/**
 * Decisions from a sweep's table, pure. For each group (experiment, model, workload class, load):
 * the configuration with the least energy per output token among the points that meet their SLO,
 * set beside the highest-performance one (most GPUs, highest clock, largest batch — the usual
 * default, DynamoLLM's baseline), and the Pareto frontier of energy per output token vs p90
 * end-to-end latency.
 */
export interface ConfigSummary {
  id: string;
  tp: number;
  maxBatch: number;
  smClockMhz: number;
  jPerOutputToken: number;
  energyPerRequestWh: number;
  avgPowerW: number;
  ttftP90Ms: number;
  tpotP90Ms: number;
  e2eP90Ms: number;
  sloAttainment: number;
  sloMet: boolean;
}

export interface Recommendation {
  experiment: string;
  model: string;
  workloadClass: string;
  load: string;
  points: number;
  feasible: number;
  /** Least J per output token with the SLO met; undefined when no point meets it. */
  best?: ConfigSummary;
  baseline: ConfigSummary;
  /** best vs baseline energy per output token, e.g. -0.42 = 42% less. */
  savingVsBaseline?: number;
  /** Lowest energy to highest, each point better in latency than every cheaper one. */
  pareto: ConfigSummary[];
}

export const configLabel = (c: Pick<ConfigSummary, "tp" | "maxBatch" | "smClockMhz">): string => `TP${c.tp} b${c.maxBatch} @ ${c.smClockMhz} MHz`;

export function summarize(r: PointRow): ConfigSummary {
  return { id: r.id, tp: r.tp, maxBatch: r.maxBatch, smClockMhz: r.smClockMhz, jPerOutputToken: r.jPerOutputToken, energyPerRequestWh: r.energyPerRequestWh, avgPowerW: r.avgPowerW, ttftP90Ms: r.ttftP90Ms, tpotP90Ms: r.tpotP90Ms, e2eP90Ms: r.e2eP90Ms, sloAttainment: r.sloAttainment, sloMet: r.sloMet };
}

const valid = (r: PointRow) => Number.isFinite(r.jPerOutputToken) && Number.isFinite(r.e2eP90Ms);

/** Points not dominated in (energy, latency): sorted by energy, latency strictly falling. */
export function paretoFrontier<T extends { jPerOutputToken: number; e2eP90Ms: number }>(rows: readonly T[]): T[] {
  const sorted = rows.filter((r) => Number.isFinite(r.jPerOutputToken) && Number.isFinite(r.e2eP90Ms)).sort((a, b) => a.jPerOutputToken - b.jPerOutputToken || a.e2eP90Ms - b.e2eP90Ms);
  const out: T[] = [];
  for (const r of sorted) if (out.length === 0 || r.e2eP90Ms < out[out.length - 1]!.e2eP90Ms) out.push(r);
  return out;
}

export function groupKey(r: Pick<PointRow, "experiment" | "model" | "workloadClass" | "load">): string {
  return `${r.experiment}|${r.model}|${r.workloadClass}|${r.load}`;
}

export function recommend(rows: readonly PointRow[]): Recommendation[] {
  const groups = new Map<string, PointRow[]>();
  for (const r of rows) {
    const k = groupKey(r);
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const out: Recommendation[] = [];
  for (const g of groups.values()) {
    const ok = g.filter(valid);
    if (ok.length === 0) continue;
    const feasible = ok.filter((r) => r.sloMet);
    const best = feasible.reduce<PointRow | undefined>((b, r) => (!b || r.jPerOutputToken < b.jPerOutputToken ? r : b), undefined);
    const baseline = ok.reduce((b, r) => (r.tp > b.tp || (r.tp === b.tp && (r.smClockMhz > b.smClockMhz || (r.smClockMhz === b.smClockMhz && r.maxBatch > b.maxBatch))) ? r : b));
    const first = g[0]!;
    out.push({
      experiment: first.experiment,
      model: first.model,
      workloadClass: first.workloadClass,
      load: first.load,
      points: g.length,
      feasible: feasible.length,
      ...(best ? { best: summarize(best), savingVsBaseline: best.jPerOutputToken / baseline.jPerOutputToken - 1 } : {}),
      baseline: summarize(baseline),
      pareto: paretoFrontier(ok).map(summarize),
    });
  }
  return out;
}

const f = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : "—");

/** The recommendations as a plain-text table (what `sweep` prints). */
export function formatRecommendations(recs: readonly Recommendation[]): string {
  const head = ["experiment", "model", "class", "load", "least energy with SLO met", "J/out tok", "Wh/req", "SLO att.", "vs baseline", "baseline", "pareto pts"];
  const rows = recs.map((r) => [
    r.experiment,
    r.model,
    r.workloadClass,
    r.load,
    r.best ? configLabel(r.best) : "none meets the SLO",
    r.best ? f(r.best.jPerOutputToken, 3) : "—",
    r.best ? f(r.best.energyPerRequestWh, 4) : "—",
    r.best ? `${(r.best.sloAttainment * 100).toFixed(0)}%` : "—",
    r.savingVsBaseline !== undefined ? `${r.savingVsBaseline <= 0 ? "" : "+"}${(r.savingVsBaseline * 100).toFixed(0)}%` : "—",
    configLabel(r.baseline),
    String(r.pareto.length),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  return [fmt(head), fmt(widths.map((w) => "-".repeat(w))), ...rows.map(fmt)].join("\n") + "\n";
}
