import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, errorMessage } from "../../../shared/errors.ts";
import { checkFindings, type Finding } from "../findings.ts";
import type { PointRow } from "../metrics.ts";
import { configLabel, recommend, type Recommendation } from "../recommend.ts";
import { POINTS_FILE, RESULTS_JSON, readPoints } from "../store.ts";
import { buildCharts } from "./charts.ts";
import { renderSvg } from "./render.ts";

/**
 * `joulestream report`: one self-contained HTML file (inline CSS and SVG, no script needed to
 * read it) from a sweep directory — the paper's findings beside ours, the recommendations, and
 * the charts. A few lines of inline script only mark each drawn chart with its size, so a
 * headless browser can confirm every chart laid out.
 */
export interface SweepData {
  matrix: string;
  description?: string;
  generatedAt?: string;
  rows: PointRow[];
}

export function readSweepDir(dir: string): SweepData {
  const json = join(dir, RESULTS_JSON);
  const points = join(dir, POINTS_FILE);
  // results.json is written when a sweep ends; points.jsonl as each point is measured. A sweep that
  // was killed leaves points.jsonl newer than results.json: then points.jsonl is the truth.
  const stale = existsSync(json) && existsSync(points) && statSync(points).mtimeMs > statSync(json).mtimeMs;
  if (existsSync(json) && !stale) {
    let d: Partial<SweepData> & { rows?: unknown };
    try {
      d = JSON.parse(readFileSync(json, "utf8")) as typeof d;
    } catch (err) {
      throw new ConfigError("--in", `${json} is not valid JSON (${errorMessage(err)}); delete it to report from ${POINTS_FILE}`);
    }
    if (!d || typeof d !== "object" || (d.rows !== undefined && !Array.isArray(d.rows))) throw new ConfigError("--in", `${json} is not a sweep's results (expected an object with a rows array)`);
    // null in JSON stands for a non-finite number.
    const rows = ((d.rows as PointRow[] | undefined) ?? []).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v === null ? NaN : v])) as unknown as PointRow);
    return { matrix: d.matrix ?? "sweep", ...(d.description ? { description: d.description } : {}), ...(d.generatedAt ? { generatedAt: d.generatedAt } : {}), rows };
  }
  if (existsSync(points)) return { matrix: "sweep", rows: [...readPoints(points).values()] };
  throw new ConfigError("--in", `${dir} holds no ${RESULTS_JSON} or ${POINTS_FILE} (run joulestream sweep --out ${dir} first)`);
}

const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
const num = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : "—");
const table = (head: string[], rows: string[][], cls = "") => `<table${cls ? ` class="${cls}"` : ""}><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows.map((r) => `<tr>${r.join("")}</tr>`).join("\n")}</tbody></table>`;
const td = (s: unknown, cls = "") => `<td${cls ? ` class="${cls}"` : ""}>${esc(s)}</td>`;

function findingsTable(f: Finding[]): string {
  return table(["", "finding", "published (PAPER.md)", "this sweep", "verdict"], f.map((x) => [td(x.id), td(x.title), `<td>${esc(x.published)}<div class="src">${esc(x.source)}</div></td>`, td(x.ours), td(x.verdict, `verdict ${x.verdict.replace(/ /g, "-")}`)]), "findings");
}

function paretoSummary(r: Recommendation): string {
  const p = r.pareto;
  if (p.length === 0) return "—";
  const first = p[0]!, last = p[p.length - 1]!;
  const show = (c: (typeof p)[number]) => `${configLabel(c)} (${num(c.jPerOutputToken, 2)} J/tok, ${num(c.e2eP90Ms / 1000, 1)} s)`;
  return p.length === 1 ? show(first) : `${p.length} points, from ${show(first)} to ${show(last)}`;
}

function recommendationsTable(recs: Recommendation[]): string {
  return table(
    ["experiment", "class", "load", "least energy, SLO met", "J/out tok", "Wh/req", "TTFT p90", "TPOT p90", "SLO att.", "baseline (max performance)", "J/out tok", "saving", "Pareto frontier (energy vs E2E p90)"],
    recs.map((r) => [
      td(r.experiment), td(r.workloadClass), td(r.load),
      r.best ? td(configLabel(r.best), "best") : td("none meets the SLO", "none"),
      td(r.best ? num(r.best.jPerOutputToken, 3) : "—"), td(r.best ? num(r.best.energyPerRequestWh, 4) : "—"),
      td(r.best ? `${num(r.best.ttftP90Ms, 0)} ms` : "—"), td(r.best ? `${num(r.best.tpotP90Ms, 1)} ms` : "—"), td(r.best ? `${(r.best.sloAttainment * 100).toFixed(0)}%` : "—"),
      td(configLabel(r.baseline)), td(num(r.baseline.jPerOutputToken, 3)), td(r.savingVsBaseline !== undefined ? `${(r.savingVsBaseline * 100).toFixed(0)}%` : "—"),
      td(paretoSummary(r), "pareto"),
    ]),
    "recs",
  );
}

const CSS = `body{font:14px/1.45 Helvetica,Arial,sans-serif;margin:24px 32px;color:#222;max-width:1500px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666}table{border-collapse:collapse;margin:8px 0;font-size:12.5px}th,td{border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f4f4f4}.src{color:#888;font-size:11px;margin-top:2px}.verdict{font-weight:bold;white-space:nowrap}.reproduced{color:#1a7f37}.partly{color:#9a6700}
.not-reproduced{color:#cf222e}.not-measured{color:#888}.best{font-weight:bold}.none{color:#cf222e}.pareto{font-size:11px;color:#555;max-width:420px}
figure{margin:18px 0 26px}figcaption{color:#555;font-size:12.5px;margin-top:4px;max-width:1000px}figure h3{font-size:15px;margin:0 0 6px}.chart svg{max-width:100%;height:auto}`;

/** Marks each chart with the size Chromium laid its SVG out at and its number of drawn marks. */
const PROBE = `<script>addEventListener("load",()=>{for(const f of document.querySelectorAll("figure[data-chart]")){const s=f.querySelector("svg");if(!s)continue;const b=s.getBoundingClientRect();const marks=s.querySelectorAll("path,rect,circle,line").length;f.setAttribute("data-drawn",b.width>50&&b.height>50&&marks>10?"yes":"no");f.setAttribute("data-size",Math.round(b.width)+"x"+Math.round(b.height));f.setAttribute("data-marks",String(marks));}document.body.setAttribute("data-probed","yes");});</script>`;

export async function buildReportHtml(data: SweepData): Promise<string> {
  const recs = recommend(data.rows);
  const findings = checkFindings(data.rows, recs);
  const charts = buildCharts(data.rows);
  const figures: string[] = [];
  for (const c of charts) {
    const svg = await renderSvg(c.spec);
    figures.push(`<figure data-chart="${esc(c.id)}"><h3>${esc(c.title)}</h3><div class="chart">${svg}</div><figcaption>${esc(c.caption)}</figcaption></figure>`);
  }
  const models = [...new Set(data.rows.map((r) => r.model))].join(", ");
  const modes = [...new Set(data.rows.map((r) => r.mode))].join(", ");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>joulestream — ${esc(data.matrix)}</title><style>${CSS}</style></head>
<body>
<h1>joulestream lab report — ${esc(data.matrix)}</h1>
<div class="meta">${esc(data.description ?? "")}<br>${data.rows.length} points · model ${esc(models)} · mode ${esc(modes)}${data.generatedAt ? ` · swept ${esc(data.generatedAt)}` : ""} · report ${esc(new Date().toISOString())}</div>
<h2>The paper's findings beside ours</h2>
${findingsTable(findings)}
<h2>Recommendations: least energy per output token with the SLOs met</h2>
<p class="meta">Per workload class and load. Baseline: the highest-performance configuration swept (most GPUs, highest clock, largest batch), DynamoLLM's comparison point. Energy counts every GPU of the point, idle included.</p>
${recommendationsTable(recs)}
<h2>Charts</h2>
${figures.length ? figures.join("\n") : "<p>No chart: charts need at least 3 SM clocks or 3 max-batch values, or 2 TP values, in one experiment.</p>"}
${PROBE}
</body></html>
`;
}
