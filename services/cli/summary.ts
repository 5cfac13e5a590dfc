import { influxQuery, influxString, type InfluxTarget } from "../../shared/mod.ts";
import type { Summary } from "../../shared/mod.ts";

/**
 * The run summary, read back from InfluxDB (what a dashboard would see, not the analyzer's memory):
 * per-request energy of one run, and the node's measured / attributed / idle energy.
 */
export interface RequestRow {
  id: string;
  instance: string;
  promptTokens: number;
  outputTokens: number;
  energyJ: number;
  prefillJ: number;
  decodeJ: number;
  jPerOutputToken: number | null;
  incomplete: boolean;
  workloadClass: string;
  /** The tap's status: ok, error (e.g. a 400 for a prompt over the context), aborted, … */
  status: string;
}

export interface RunSummary {
  runId: string;
  node: string;
  database: string;
  requests: RequestRow[];
  totals: { measuredEnergyJ: number; attributedEnergyJ: number; idleEnergyJ: number; windows: number; incompleteWindows: number };
  perRequest: { energyJ: Percentiles; jPerOutputToken: Percentiles };
}

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  mean: number;
}

export function percentiles(xs: number[]): Percentiles {
  if (xs.length === 0) return { p50: 0, p90: 0, p99: 0, mean: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

export async function readRunSummary(target: InfluxTarget, runId: string, node: string): Promise<RunSummary> {
  const reqSeries = await influxQuery(
    target,
    `SELECT request_id, instance, workload_class, status, prompt_tokens, output_tokens, energy_j, prefill_j, decode_j, j_per_output_token, incomplete FROM request_energy WHERE run_id = ${influxString(runId)} AND node = ${influxString(node)}`,
  );
  const requests: RequestRow[] = (reqSeries[0]?.rows ?? []).map((r) => ({
    id: String(r.request_id),
    instance: String(r.instance),
    workloadClass: String(r.workload_class),
    promptTokens: Number(r.prompt_tokens),
    outputTokens: Number(r.output_tokens),
    energyJ: Number(r.energy_j),
    prefillJ: Number(r.prefill_j),
    decodeJ: Number(r.decode_j),
    jPerOutputToken: r.j_per_output_token === null ? null : Number(r.j_per_output_token),
    incomplete: r.incomplete === true,
    status: String(r.status ?? "ok"),
  }));
  // A request the server refused did no work (0 J): it would drag the per-request figures down.
  const served = requests.filter((r) => r.status === "ok");
  const tot = await influxQuery(target, `SELECT SUM(measured_j) AS m, SUM(attributed_j) AS a, SUM(idle_j) AS i, COUNT(measured_j) AS n FROM node_energy WHERE node = ${influxString(node)}`);
  const inc = await influxQuery(target, `SELECT COUNT(measured_j) AS n FROM node_energy WHERE node = ${influxString(node)} AND incomplete = true`);
  const row = tot[0]?.rows[0] ?? {};
  return {
    runId,
    node,
    database: target.database,
    requests,
    totals: {
      measuredEnergyJ: Number(row.m ?? 0),
      attributedEnergyJ: Number(row.a ?? 0),
      idleEnergyJ: Number(row.i ?? 0),
      windows: Number(row.n ?? 0),
      incompleteWindows: Number(inc[0]?.rows[0]?.n ?? 0),
    },
    perRequest: {
      energyJ: percentiles(served.map((r) => r.energyJ)),
      jPerOutputToken: percentiles(served.filter((r) => r.jPerOutputToken !== null).map((r) => r.jPerOutputToken!)),
    },
  };
}

export function formatSummary(s: RunSummary, extra: { influxUrl: string; loadLine?: string; byClass?: Summary }): string {
  const f = (x: number, d = 2) => x.toFixed(d);
  const t = s.totals;
  const count = (status: string) => s.requests.filter((r) => r.status === status).length;
  const [served, refused, aborted] = [count("ok"), count("error"), count("aborted")];
  const conservation = t.measuredEnergyJ > 0 ? Math.abs(t.measuredEnergyJ - (t.attributedEnergyJ + t.idleEnergyJ)) / t.measuredEnergyJ : 0;
  const lines = [
    "",
    `joulestream demo — run ${s.runId} on node ${s.node}`,
    "",
    `  requests measured        ${s.requests.length}${s.requests.some((r) => r.incomplete) ? ` (${s.requests.filter((r) => r.incomplete).length} incomplete)` : ""}`,
    // The per-request figures below are the served requests' (as the query API's per class are).
    ...(refused + aborted > 0 ? [`    served / refused / aborted  ${served} / ${refused} / ${aborted}`] : []),
    ...(extra.loadLine ? [`  load generator           ${extra.loadLine}`] : []),
    `  measured GPU energy      ${f(t.measuredEnergyJ, 1)} J  (${f(t.measuredEnergyJ / 3600, 3)} Wh over ${t.windows} windows)`,
    `  attributed to requests   ${f(t.attributedEnergyJ, 1)} J  (${f((100 * t.attributedEnergyJ) / (t.measuredEnergyJ || 1), 1)}%)`,
    `  idle                     ${f(t.idleEnergyJ, 1)} J  (${f((100 * t.idleEnergyJ) / (t.measuredEnergyJ || 1), 1)}%)`,
    `  conservation error       ${conservation.toExponential(2)} (|measured − attributed − idle| / measured)`,
    "",
    "                        p50        p90        p99       mean",
    `  J per request   ${[s.perRequest.energyJ.p50, s.perRequest.energyJ.p90, s.perRequest.energyJ.p99, s.perRequest.energyJ.mean].map((x) => f(x, 2).padStart(10)).join(" ")}`,
    `  J per out token ${[s.perRequest.jPerOutputToken.p50, s.perRequest.jPerOutputToken.p90, s.perRequest.jPerOutputToken.p99, s.perRequest.jPerOutputToken.mean].map((x) => f(x, 3).padStart(10)).join(" ")}`,
    "",
    ...(extra.byClass && extra.byClass.groups.length > 0
      ? [
          "  by workload class      served  refused/aborted   J/out-token   TTFT p50/p99 ms     TPOT p50 ms   SLO met",
          ...extra.byClass.groups.map(
            (g) =>
              `  ${g.workloadClass.padEnd(20)} ${String(g.requests).padStart(8)} ${`${g.refused.requests}/${g.aborted.requests}`.padStart(16)} ${f(g.jPerOutputToken, 3).padStart(13)} ${`${f(g.ttftMs.p50 ?? NaN, 0)}/${f(g.ttftMs.p99 ?? NaN, 0)}`.padStart(17)} ${f(g.tpotMs.p50 ?? NaN, 1).padStart(15)} ${g.sloAttainment === null ? "     n/a" : `${f(100 * g.sloAttainment, 0)}%`.padStart(8)}`,
          ),
          "",
        ]
      : []),
    `  InfluxDB ${extra.influxUrl}, database "${s.database}" (measurements request_energy, instance_energy, node_energy, gpu_energy; gpu_power with the analyzer's --raw-samples)`,
    "",
  ];
  return lines.join("\n");
}
