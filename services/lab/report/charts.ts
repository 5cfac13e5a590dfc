import type { TopLevelSpec } from "vega-lite";
import type { PointRow } from "../metrics.ts";
import { paretoFrontier, groupKey } from "../recommend.ts";

/**
 * The report's charts as vega-lite specs built from the tidy table (pure). A chart whose data the
 * sweep does not hold is left out (the report says so) rather than drawn empty.
 */
export interface ChartSpec {
  id: string;
  title: string;
  caption: string;
  spec: TopLevelSpec;
}

const CLASS_ORDER = ["short-short", "short-medium", "short-long", "medium-short", "medium-medium", "medium-long", "long-short", "long-medium", "long-long"];
const classColor = { field: "workloadClass", type: "nominal", title: "workload class", sort: CLASS_ORDER, scale: { scheme: "tableau10" } } as const;
const base = { $schema: "https://vega.github.io/schema/vega-lite/v6.json", config: { font: "Helvetica, Arial, sans-serif", view: { stroke: "#ddd" }, axis: { labelFontSize: 11, titleFontSize: 12 }, legend: { labelFontSize: 11 } } } as const;

/** Slim records for the charts (finite numbers only: vega-lite drops nulls, JSON has no NaN). */
function values(rows: readonly PointRow[], extra: (r: PointRow) => Record<string, unknown> = () => ({})): Record<string, unknown>[] {
  return rows.map((r) => ({
    workloadClass: r.workloadClass, tp: r.tp, tpLabel: `TP${r.tp}`, maxBatch: r.maxBatch, smClockMhz: r.smClockMhz, load: r.load, experiment: r.experiment,
    jPerOutputToken: r.jPerOutputToken, energyPerRequestWh: r.energyPerRequestWh, powerPerGpuW: r.powerPerGpuW, avgPowerW: r.avgPowerW,
    ttftP50Ms: r.ttftP50Ms, ttftP90Ms: r.ttftP90Ms, tpotP50Ms: r.tpotP50Ms, tpotP90Ms: r.tpotP90Ms, e2eP90Ms: r.e2eP90Ms, sloAttainment: r.sloAttainment, sloMet: r.sloMet ? "SLO met" : "SLO missed",
    throughputTokensPerS: r.throughputTokensPerS, ...extra(r),
  })).filter((v) => Object.values(v).every((x) => typeof x !== "number" || Number.isFinite(x)));
}

const distinct = <T>(xs: T[]) => [...new Set(xs)];

/** Rows of experiments that sweep the clock (≥ 3 clocks at one TP, batch and load). */
function clockRows(rows: readonly PointRow[]): PointRow[] {
  const groups = new Map<string, PointRow[]>();
  for (const r of rows) if (r.load.endsWith("tok/s")) groups.set(`${groupKey(r)}|${r.tp}|${r.maxBatch}`, [...(groups.get(`${groupKey(r)}|${r.tp}|${r.maxBatch}`) ?? []), r]);
  const ok = [...groups.values()].filter((g) => distinct(g.map((r) => r.smClockMhz)).length >= 3);
  // One batch size per experiment (the largest) so lines do not overlap.
  const flat = ok.flat();
  const maxBatch = new Map<string, number>();
  for (const r of flat) maxBatch.set(r.experiment, Math.max(maxBatch.get(r.experiment) ?? 0, r.maxBatch));
  const firstLoad = new Map<string, string>();
  for (const r of flat) if (!firstLoad.has(r.experiment)) firstLoad.set(r.experiment, r.load);
  const exp = flat[0]?.experiment;
  return flat.filter((r) => r.experiment === exp && r.maxBatch === maxBatch.get(r.experiment) && r.load === firstLoad.get(r.experiment));
}

function vsClock(id: string, title: string, caption: string, rows: PointRow[], y: { field: string; title: string; log?: boolean }): ChartSpec {
  return {
    id, title, caption,
    spec: {
      ...base,
      data: { values: values(rows) },
      facet: { column: { field: "tpLabel", type: "ordinal", title: null, sort: distinct(rows.map((r) => r.tp)).sort((a, b) => a - b).map((t) => `TP${t}`) } },
      spec: {
        width: 250, height: 220,
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "smClockMhz", type: "quantitative", title: "SM clock (MHz)", scale: { zero: false } },
          y: { field: y.field, type: "quantitative", title: y.title, scale: y.log ? { type: "log" } : { zero: false } },
          color: classColor,
        },
      },
    } as TopLevelSpec,
  };
}

export function buildCharts(rows: readonly PointRow[]): ChartSpec[] {
  const charts: ChartSpec[] = [];
  const clk = clockRows(rows);
  if (clk.length) {
    const ctx = `${clk[0]!.experiment}: ${clk[0]!.model}, max batch ${clk[0]!.maxBatch}, ${clk[0]!.load}`;
    charts.push(vsClock("energy-vs-clock", "Energy per output token vs GPU clock", `${ctx}. Energy counts every GPU of the instance, idle time included (log scale).`, clk, { field: "jPerOutputToken", title: "J per output token", log: true }));
    charts.push(vsClock("power-vs-clock", "Power per GPU vs GPU clock", `${ctx}. Mean power over the measurement window.`, clk, { field: "powerPerGpuW", title: "W per GPU" }));
    charts.push(vsClock("ttft-vs-clock", "TTFT (p90) vs GPU clock", `${ctx}. Prefill is compute-bound: TTFT grows as the clock falls (log scale).`, clk, { field: "ttftP90Ms", title: "TTFT p90 (ms)", log: true }));
    charts.push(vsClock("tpot-vs-clock", "Time per output token (p90) vs GPU clock", `${ctx}. Decode is memory-bound: TPOT barely moves until low clocks.`, clk, { field: "tpotP90Ms", title: "TPOT p90 (ms)" }));
    charts.push({
      id: "slo-heatmap", title: "SLO attainment by clock and TP",
      caption: `${ctx}. Share of requests meeting both the TTFT and the TPOT SLO; the point counts as meeting the SLO at ≥ the matrix's attainment target.`,
      spec: {
        ...base,
        data: { values: values(clk) },
        facet: { field: "workloadClass", type: "nominal", title: null, sort: CLASS_ORDER },
        columns: 3,
        spec: {
          width: 230, height: 90,
          mark: "rect",
          encoding: {
            x: { field: "smClockMhz", type: "ordinal", title: "SM clock (MHz)" },
            y: { field: "tpLabel", type: "ordinal", title: null },
            color: { field: "sloAttainment", type: "quantitative", title: "SLO attainment", scale: { domain: [0, 1], scheme: "redyellowgreen" } },
          },
        },
      } as TopLevelSpec,
    });
  }

  // Batch: experiments with ≥ 3 max-batch values.
  const batchExps = distinct(rows.map((r) => r.experiment)).filter((e) => distinct(rows.filter((r) => r.experiment === e).map((r) => r.maxBatch)).length >= 3);
  const batch = rows.filter((r) => batchExps.includes(r.experiment));
  if (batch.length) {
    const maxClock = Math.max(...batch.map((r) => r.smClockMhz));
    const b = batch.filter((r) => r.smClockMhz === maxClock);
    const loads = distinct(b.map((r) => r.load));
    // Several TP degrees in the batch sweep: one line each, not one zig-zag line per class.
    const tps = distinct(b.map((r) => r.tp)).sort((x, y) => x - y);
    const split = tps.length > 1 ? { strokeDash: { field: "tpLabel", type: "nominal", title: "TP", sort: tps.map((t) => `TP${t}`) } } : {};
    const layer = (field: string, title: string, log: boolean) => ({
      ...base,
      data: { values: values(b) },
      facet: { column: { field: "load", type: "nominal", title: "offered load", sort: loads } },
      spec: {
        width: 230, height: 220,
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "maxBatch", type: "quantitative", title: "max batch size", scale: { type: "log", base: 2 } },
          y: { field, type: "quantitative", title, scale: log ? { type: "log" } : { zero: false } },
          color: classColor,
          ...split,
        },
      },
    }) as TopLevelSpec;
    charts.push({ id: "energy-vs-batch", title: "Energy per output token vs max batch size", caption: `${batchExps.join(", ")}: ${distinct(b.map((r) => r.model)).join(", ")}, ${tps.map((t) => `TP${t}`).join("/")}, ${maxClock} MHz. At saturation the batch stays full and larger batches amortize each decode step's weight reads (log scales).`, spec: layer("jPerOutputToken", "J per output token", true) });
    charts.push({ id: "tpot-vs-batch", title: "Time per output token (p90) vs max batch size", caption: `Same points: the price of a larger batch is a slower decode step.`, spec: layer("tpotP90Ms", "TPOT p90 (ms)", false) });
  }

  // TP: ≥ 2 TP degrees at the highest clock and a fixed load.
  const maxClock = Math.max(...rows.map((r) => r.smClockMhz));
  const tpRows = clk.filter((r) => r.smClockMhz === maxClock);
  if (distinct(tpRows.map((r) => r.tp)).length >= 2) {
    const layer = (field: string, title: string, log: boolean) => ({
      ...base,
      data: { values: values(tpRows) },
      width: 360, height: 240,
      mark: { type: "line", point: true },
      encoding: {
        x: { field: "tp", type: "ordinal", title: "tensor parallelism (GPUs)" },
        y: { field, type: "quantitative", title, scale: log ? { type: "log" } : { zero: false } },
        color: classColor,
      },
    }) as TopLevelSpec;
    charts.push({ id: "energy-vs-tp", title: "Energy per request vs tensor parallelism", caption: `${tpRows[0]!.experiment}: ${maxClock} MHz, ${tpRows[0]!.load}. More GPUs per instance: more power for the same work (log scale).`, spec: layer("energyPerRequestWh", "Wh per request", true) });
    charts.push({ id: "ttft-vs-tp", title: "TTFT (p50) vs tensor parallelism", caption: "Same points: more TP lowers latency.", spec: layer("ttftP50Ms", "TTFT p50 (ms)", true) });
  }

  // Pareto frontier per class over the clock × TP grid.
  if (clk.length) {
    const frontier = new Set<string>();
    for (const cls of distinct(clk.map((r) => r.workloadClass))) for (const r of paretoFrontier(clk.filter((x) => x.workloadClass === cls))) frontier.add(r.id);
    const data = values(clk, (r) => ({ onFrontier: frontier.has(r.id) }));
    charts.push({
      id: "pareto", title: "Energy vs latency: the Pareto frontier",
      caption: `${clk[0]!.experiment}: every clock × TP point of each class; the line joins the points no other point beats in both energy per output token and p90 end-to-end latency. Filled: SLO met.`,
      spec: {
        ...base,
        data: { values: data },
        facet: { field: "workloadClass", type: "nominal", title: null, sort: CLASS_ORDER },
        columns: 3,
        resolve: { scale: { x: "independent", y: "independent" } },
        spec: {
          width: 230, height: 180,
          layer: [
            {
              mark: { type: "point", size: 45 },
              encoding: {
                x: { field: "e2eP90Ms", type: "quantitative", title: "E2E latency p90 (ms)", scale: { type: "log" } },
                y: { field: "jPerOutputToken", type: "quantitative", title: "J / output token", scale: { zero: false } },
                color: { field: "tpLabel", type: "nominal", title: "TP" },
                fill: { condition: { test: "datum.sloMet === 'SLO met'", field: "tpLabel", type: "nominal" }, value: "transparent" },
                tooltip: [{ field: "smClockMhz" }, { field: "tpLabel" }],
              },
            },
            {
              transform: [{ filter: "datum.onFrontier" }],
              mark: { type: "line", color: "#333", strokeDash: [4, 3] },
              encoding: { x: { field: "e2eP90Ms", type: "quantitative", scale: { type: "log" } }, y: { field: "jPerOutputToken", type: "quantitative" }, order: { field: "e2eP90Ms" } },
            },
          ],
        },
      } as TopLevelSpec,
    });
  }
  return charts;
}
