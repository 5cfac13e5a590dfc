import type { TopLevelSpec } from "vega-lite";
import { renderSvg } from "../report/render.ts";
import type { ArmResult, Pool } from "./arm.ts";

/** The evaluation's figures per arm, savings against the maximum clock, and the acceptance check. */
export interface ArmSummary {
  arm: string;
  energyKwh: number;
  /** Fleet energy ÷ requests sent, J (idle included). */
  jPerRequest: number;
  attributedKwh: number;
  requests: number;
  attainmentPct: number;
  /** The analyzer's slo_met share in InfluxDB (requests it joined with their load result). */
  attainmentInfluxPct?: number;
  savingPctVsMax?: number;
  attainmentDeltaPts?: number;
  gco2?: number;
  gco2SavedVsMax?: number;
  staticMhz?: string;
  decisions?: string;
  /** Per pool: its nodes' energy (InfluxDB node_energy) and the load generator's attainment. */
  pools?: { pool: string; energyKwh: number; attainmentPct: number; requests: number }[];
}

/** A pool in the summary: its static clock, what the replay said of it, and the steady-load sweep's choice. */
export interface PoolSummary {
  name: string;
  trace: string;
  staticMhz: number;
  staticReplay?: { attainmentPct: number; maxAttainmentPct: number; energyKwh: number; maxEnergyKwh: number };
  sweepMhz?: number;
  sweepReplay?: { attainmentPct: number; energyKwh: number };
  replay?: { mhz: number; kwh: number; attainmentPct: number }[];
}

export interface EvalSummary {
  setup: Record<string, unknown> & { pools: PoolSummary[] };
  arms: ArmSummary[];
  acceptance?: { savingPct: number; attainmentDeltaPts: number; beatsStatic: boolean; met: boolean; target: string };
}

const r = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

export function summarizeArms(arms: readonly ArmResult[], setup: { nodesPerPool: number; gpus: number; model: string; traceMinutes: number; speedup: number; sample: number; tailS: number; slo: object; periodMs: number; minSamples: number; pools: Pool[] }): EvalSummary {
  const max = arms.find((a) => a.arm === "max");
  const rows: ArmSummary[] = arms.map((a) => {
    const e = a.energy;
    const s: ArmSummary = {
      arm: a.arm, energyKwh: r(e.energyJ / 3.6e6, 5), jPerRequest: r(a.sent > 0 ? e.energyJ / a.sent : NaN, 1), attributedKwh: r(e.attributedJ / 3.6e6, 5), requests: a.sent, attainmentPct: r(a.attainment * 100, 2),
      ...(e.sloJoined > 0 ? { attainmentInfluxPct: r((e.sloMet / e.sloJoined) * 100, 2) } : {}),
      ...(e.gco2 !== undefined ? { gco2: r(e.gco2, 1) } : {}),
      ...(a.arm === "static" ? { staticMhz: Object.entries(a.byPool).map(([p, v]) => `${p} ${v.staticMhz} MHz`).join(", ") } : {}),
      ...(a.governor ? { decisions: Object.entries(a.governor.byAction).map(([k, n]) => `${k} ${n}`).join(", ") } : {}),
      pools: Object.entries(a.byPool).map(([pool, v]) => ({ pool, energyKwh: r(v.nodes.reduce((x, n) => x + (e.byNodeJ[n] ?? 0), 0) / 3.6e6, 4), attainmentPct: r(v.sent > 0 ? (v.metSlo / v.sent) * 100 : 0, 2), requests: v.sent })),
    };
    if (max && a.arm !== "max") {
      s.savingPctVsMax = r((1 - e.energyJ / max.energy.energyJ) * 100, 2);
      s.attainmentDeltaPts = r((a.attainment - max.attainment) * 100, 2);
      if (e.gco2 !== undefined && max.energy.gco2 !== undefined) s.gco2SavedVsMax = r(max.energy.gco2 - e.gco2, 1);
    }
    return s;
  });
  const gov = rows.find((x) => x.arm === "governor");
  const stat = rows.find((x) => x.arm === "static");
  const { pools, ...rest } = setup;
  return {
    setup: {
      ...rest, nodes: setup.nodesPerPool * pools.length,
      pools: pools.map((p): PoolSummary => {
        const at = p.replay?.find((x) => x.mhz === p.staticMhz);
        const top = p.replay?.[0];
        return {
          name: p.name, trace: p.trace.replace(/^.*\/load\//, "load/"), staticMhz: p.staticMhz,
          ...(at && top ? { staticReplay: { attainmentPct: r(at.attainment * 100, 2), maxAttainmentPct: r(top.attainment * 100, 2), energyKwh: r(at.energyKwh, 4), maxEnergyKwh: r(top.energyKwh, 4) } } : {}),
          ...(p.sweepMhz !== undefined ? { sweepMhz: p.sweepMhz } : {}),
          ...(p.sweepReplay ? { sweepReplay: { attainmentPct: r(p.sweepReplay.attainment * 100, 2), energyKwh: r(p.sweepReplay.energyKwh, 4) } } : {}),
          ...(p.replay ? { replay: p.replay.map((x) => ({ mhz: x.mhz, kwh: r(x.energyKwh, 4), attainmentPct: r(x.attainment * 100, 2) })) } : {}),
        };
      }),
    },
    arms: rows,
    ...(gov && gov.savingPctVsMax !== undefined && gov.attainmentDeltaPts !== undefined
      ? {
          acceptance: {
            savingPct: gov.savingPctVsMax, attainmentDeltaPts: gov.attainmentDeltaPts, beatsStatic: stat ? gov.energyKwh < stat.energyKwh && gov.attainmentPct >= stat.attainmentPct - 1 : false,
            met: gov.savingPctVsMax >= 20 && gov.attainmentDeltaPts >= -1 && (!stat || (gov.energyKwh < stat.energyKwh && gov.attainmentPct >= stat.attainmentPct - 1)),
            target: "≥ 20% less energy than the maximum clock, attainment within 1 point of it, and less energy than the lab's static choice",
          },
        }
      : {}),
  };
}

export function formatEvalTable(s: EvalSummary): string {
  const head = ["arm", "energy kWh", "J/request", "saving", "attainment", "Δ pts", "in InfluxDB", ...(s.arms.some((a) => a.gco2 !== undefined) ? ["gCO2", "gCO2 saved"] : []), "clocks / decisions"];
  const rows = s.arms.map((a) => [a.arm, a.energyKwh.toFixed(4), a.jPerRequest.toFixed(0), a.savingPctVsMax !== undefined ? `${a.savingPctVsMax.toFixed(1)}%` : "—", `${a.attainmentPct.toFixed(2)}%`, a.attainmentDeltaPts !== undefined ? a.attainmentDeltaPts.toFixed(2) : "—",
    a.attainmentInfluxPct !== undefined ? `${a.attainmentInfluxPct.toFixed(2)}%` : "—", ...(s.arms.some((x) => x.gco2 !== undefined) ? [String(a.gco2 ?? "—"), String(a.gco2SavedVsMax ?? "—")] : []), a.staticMhz ?? a.decisions ?? "maximum"]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(w[i]!)).join("  ");
  const acc = s.acceptance;
  const poolNames = [...new Set(s.arms.flatMap((a) => (a.pools ?? []).map((p) => p.pool)))];
  const byPool = poolNames.length > 0
    ? ["per pool (kWh from InfluxDB, attainment):", ...s.arms.map((a) => `  ${a.arm.padEnd(w[0]!)}  ${poolNames.map((n) => { const p = a.pools?.find((x) => x.pool === n); return p ? `${n} ${p.energyKwh.toFixed(4)} kWh ${p.attainmentPct.toFixed(2)}% of ${p.requests}` : `${n} —`; }).join("   ")}`), ""]
    : [];
  const how = s.setup.pools.map((p) => `static ${p.name}: ${p.staticMhz} MHz, the cheapest clock within 1 point of the maximum's attainment on a replay of the pool's trace${p.staticReplay ? ` (${p.staticReplay.attainmentPct.toFixed(2)}% vs ${p.staticReplay.maxAttainmentPct.toFixed(2)}%)` : ""}${p.sweepMhz !== undefined ? `; the lab's steady-load sweep picks ${p.sweepMhz} MHz${p.sweepReplay ? `, ${p.sweepReplay.attainmentPct.toFixed(2)}% on the replay` : ""}` : ""}`);
  return [line(head), ...rows.map(line), "", ...byPool, ...how, ...(how.length ? [""] : []), acc ? `acceptance (${acc.target}): ${acc.met ? "MET" : "NOT MET"} — governor saves ${acc.savingPct.toFixed(1)}% at ${acc.attainmentDeltaPts.toFixed(2)} points of attainment, ${acc.beatsStatic ? "beats" : "does not beat"} the static choice` : "acceptance: needs the max and governor arms", ""].join("\n");
}

const esc = (x: unknown) => String(x).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
const base = { $schema: "https://vega.github.io/schema/vega-lite/v6.json", config: { font: "Helvetica, Arial, sans-serif", view: { stroke: "#ddd" } } } as const;

export function evalCharts(s: EvalSummary, arms: readonly ArmResult[]): { title: string; spec: TopLevelSpec }[] {
  const since = (a: ArmResult, t: number) => (t - a.t0Ms) / 1000;
  return [
    { title: "Energy per arm (kWh, from InfluxDB node_energy)", spec: { ...base, width: 360, height: 200, data: { values: s.arms.map((a) => ({ arm: a.arm, kwh: a.energyKwh })) }, mark: "bar", encoding: { x: { field: "arm", type: "nominal", sort: ["max", "static", "governor"] }, y: { field: "kwh", type: "quantitative", title: "kWh" } } } },
    { title: "SLO attainment per arm (%)", spec: { ...base, width: 360, height: 200, data: { values: s.arms.map((a) => ({ arm: a.arm, pct: a.attainmentPct })) }, mark: "bar", encoding: { x: { field: "arm", type: "nominal", sort: ["max", "static", "governor"] }, y: { field: "pct", type: "quantitative", title: "% of requests within both SLOs", scale: { zero: false } } } } },
    {
      title: "Static choice: each clock replayed on the pool's trace (library mode): simulated energy against SLO attainment",
      spec: {
        ...base, width: 360, height: 220,
        data: { values: s.setup.pools.flatMap((p) => (p.replay ?? []).map((x) => ({ pool: p.name, ...x }))) },
        mark: { type: "line", point: true }, encoding: { x: { field: "attainmentPct", type: "quantitative", title: "% within both SLOs (replay)", scale: { zero: false } }, y: { field: "kwh", type: "quantitative", title: "kWh (simulated)" }, color: { field: "pool", type: "nominal" }, tooltip: [{ field: "mhz", type: "quantitative" }] },
      },
    },
    { title: "Fleet power over the replay (W)", spec: { ...base, width: 640, height: 220, data: { values: arms.flatMap((a) => a.energy.timeline.map((p) => ({ arm: a.arm, s: since(a, p.tMs), w: p.powerW }))) }, mark: "line", encoding: { x: { field: "s", type: "quantitative", title: "seconds into the arm" }, y: { field: "w", type: "quantitative", title: "W" }, color: { field: "arm", type: "nominal" } } } },
    { title: "SM clock per node over the replay (MHz)", spec: { ...base, width: 640, height: 220, data: { values: arms.flatMap((a) => a.energy.clocks.map((p) => ({ arm: a.arm, node: p.node.replace(/^.*-(n\d+)$/, "$1"), s: since(a, p.tMs), mhz: p.clockMhz }))) }, mark: "line", encoding: { x: { field: "s", type: "quantitative", title: "seconds into the arm" }, y: { field: "mhz", type: "quantitative", title: "MHz", scale: { zero: false } }, color: { field: "arm", type: "nominal" }, detail: { field: "node", type: "nominal" } } } },
  ];
}

export async function buildEvalHtml(s: EvalSummary, arms: readonly ArmResult[]): Promise<string> {
  const charts = await Promise.all(evalCharts(s, arms).map(async (c) => `<figure><figcaption>${esc(c.title)}</figcaption>${await renderSvg(c.spec)}</figure>`));
  return `<!doctype html><html><head><meta charset="utf-8"><title>joulestream — governor evaluation</title><style>body{font-family:Helvetica,Arial,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}pre{background:#f8f8f8;padding:1em}</style></head><body>
<h1>Governor evaluation (simulated fleet)</h1>
<p>Energy is what the analyzer wrote to InfluxDB (node_energy: every GPU's counter deltas, idle included) over each arm's window; attainment is the load generator's (both SLOs met, of requests sent).</p>
<pre>${esc(formatEvalTable(s))}</pre>
<h2>Setup</h2><pre>${esc(JSON.stringify(s.setup, null, 2))}</pre>
${charts.join("\n")}
</body></html>
`;
}
