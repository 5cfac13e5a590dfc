import test from "ava";
import { readFileSync } from "node:fs";
import { influxQuery, type InfluxTarget } from "../shared/influxql.ts";
import { runDemo } from "../services/cli/demo.ts";
import { rollupBackfill } from "../services/analyzer/rollups.ts";
import { DATASOURCE_UID, measurementsOf, type Dashboard } from "../infra/grafana/builder.ts";
import { DASHBOARDS, PENDING_MEASUREMENTS } from "../infra/grafana/dashboards.ts";
import { renderDashboards } from "../infra/grafana/generate.ts";

/** Grafana's substitution of our variables, as it does with "All" selected (allValue `.*`). */
function substitute(q: string): string {
  const out = q
    .replace(/\$timeFilter/g, "time > now() - 1h")
    .replace(/\$__interval/g, "10s")
    .replace(/\$(node|model|workload_class|gpu)\b/g, ".*")
    .replace(/\$e2e_slo_ms\b/g, "20000");
  if (/\$[A-Za-z_]/.test(out)) throw new Error(`unsubstituted variable in ${out}`);
  return out;
}

const panels = Object.entries(DASHBOARDS).flatMap(([name, d]) => d.panels.map((p) => ({ dashboard: name, panel: p })));

test("grafana - the provisioning JSON on disk is what dashboards.ts generates", (t) => {
  for (const [path, text] of Object.entries(renderDashboards())) t.is(readFileSync(path, "utf8"), text, `${path} is stale: run node --import=tsx infra/grafana/generate.ts`);
});

test("grafana - every dashboard has a unique uid, uses the provisioned datasource, and the panels asked for are there", (t) => {
  const uids = Object.values(DASHBOARDS).map((d) => d.uid);
  t.is(new Set(uids).size, uids.length);
  const ds = readFileSync(new URL("../infra/grafana/provisioning/datasources/joulestream.yaml", import.meta.url), "utf8");
  t.true(ds.includes(`uid: ${DATASOURCE_UID}`) && ds.includes("type: influxdb"));
  for (const { panel } of panels) t.true(panel.targets.length > 0 && panel.targets.every((q) => q.rawQuery && q.query.length > 0), panel.title);
  const titles = panels.map((p) => p.panel.title.toLowerCase()).join("\n");
  for (const needle of ["fleet gpu power", "idle share", "power per gpu", "sm clock", "utilization", "energy per request by workload class", "energy per token by model", "by configuration", "slo", "analyzer lag", "dead-lettered", "agent drops"]) t.true(titles.includes(needle), needle);
});

test("grafana - every panel query returns data from InfluxDB after a real pipeline run (pending measurements excepted)", async (t) => {
  const checked: string[] = [];
  const pending: string[] = [];
  await runDemo({
    duration: 6,
    synthetic: true,
    rate: 4,
    workload: "short-short",
    speedup: 1,
    gpus: 8,
    tp: 4,
    model: "llama-2-70b",
    seed: 3,
    // This machine's RAPL is not readable here: a steady 90 W stands in for the CPU packages.
    cpuEnergy: { packages: 2, read: () => ({ energyMj: 90 * Date.now(), tMs: Date.now() }) },
    inspect: async (influx: InfluxTarget) => {
      // The demo made the rollup retention policies and continuous queries; those run once a
      // minute, so their work over the run is done here as an operator backfills.
      for (const s of rollupBackfill(influx.database, Date.now() - 3600_000, Date.now() + 60_000)) await influxQuery(influx, s);
      const existing = new Set((await influxQuery(influx, "SHOW MEASUREMENTS")).flatMap((s) => s.rows.map((r) => String(r.name))));
      for (const d of Object.values(DASHBOARDS) as Dashboard[]) {
        for (const v of (d.templating as { list: { name: string; query?: string; type: string }[] }).list) {
          if (v.type !== "query") continue;
          const s = await influxQuery(influx, substitute(v.query!));
          t.true(s.some((x) => x.rows.length > 0), `${d.uid} variable $${v.name} lists values`);
        }
      }
      for (const { dashboard, panel } of panels) {
        for (const target of panel.targets) {
          const q = substitute(target.query);
          const series = await influxQuery(influx, q); // an InfluxQL error throws: every query must parse and run
          const used = measurementsOf(q);
          t.true(used.length > 0, `${panel.title}: names its measurement`);
          const missing = used.filter((m) => !existing.has(m));
          if (missing.length > 0) {
            t.deepEqual(missing.filter((m) => !(PENDING_MEASUREMENTS as readonly string[]).includes(m)), [], `${dashboard}/${panel.title}: reads a measurement the pipeline does not write`);
            pending.push(`${dashboard}/${panel.title}`);
            continue;
          }
          const rows = series.reduce((n, s) => n + s.rows.filter((r) => Object.entries(r).some(([k, v]) => k !== "time" && v !== null)).length, 0);
          t.true(rows > 0, `${dashboard}/${panel.title} [${target.refId}] returned no data: ${q}`);
          checked.push(`${dashboard}/${panel.title}`);
        }
      }
    },
  });
  t.true(checked.length >= 25, `checked ${checked.length} queries`);
  t.log(`${checked.length} queries returned data; pending measurements (${PENDING_MEASUREMENTS.join(", ")}): ${pending.join("; ") || "none"}`);
});
