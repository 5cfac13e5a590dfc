import test from "ava";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { influxQuery } from "../shared/influxql.ts";
import { parseCarbonCsv } from "../shared/carbon.ts";
import { runGovernorEval } from "../services/lab/mod.ts";
import { governor as governorDashboard } from "../infra/grafana/dashboards.ts";

/**
 * The governor evaluation at a tiny size through real processes (nats-server, influxd) and the real
 * pipeline: its structure, and that each arm's energy is what InfluxDB holds — not a figure of merit
 * (the ≥ 20% is a bench figure: npm run bench -- governor-eval). The governor dashboard's queries
 * run here, against a governed run's data (the demo that tests the other dashboards has no governor).
 */
test("governor eval - three arms on one stack, energy read back from InfluxDB, decisions and the governor dashboard's panels in InfluxDB, carbon per arm", async (t) => {
  const out = mkdtempSync(join(tmpdir(), "geval-"));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const t0 = Date.UTC(2023, 10, 16, 0, 0, 0);
  const carbon = parseCarbonCsv(`time,co2 g/kWh\n${new Date(t0).toISOString()},200\n${new Date(t0 + 600_000).toISOString()},400\n`);
  let checked = 0;
  const r = await runGovernorEval({
    nodesPerPool: 1, gpus: 8, model: "llama-2-70b",
    convTrace: "load/traces/azure/AzureLLMInferenceTrace_conv.csv", codeTrace: "load/traces/azure/AzureLLMInferenceTrace_code.csv",
    traceMinutes: 1, speedup: 4, loadScale: 2, tailS: 3, slo: { ttftSloMs: 2000, tpotSloMs: 100, attainmentTarget: 0.9 }, periodMs: 1000, minSamples: 2,
    arms: ["max", "static", "governor"], seed: 1, out, carbon,
    inspect: async (influx, summary, arms) => {
      for (const a of arms) {
        const [s] = await influxQuery(influx, `SELECT sum("measured_j") AS e FROM "node_energy" WHERE "node" =~ /-${a.arm}-n[0-9]+$/ AND time >= ${a.t0Ms}ms AND time < ${a.t1Ms}ms`);
        const e = Number(s?.rows[0]?.e);
        t.true(e > 0, `${a.arm}: node_energy in InfluxDB`);
        t.true(Math.abs(e - a.energy.energyJ) <= 1e-6 * e, `${a.arm}: the arm's energy (${a.energy.energyJ} J) is InfluxDB's sum (${e} J)`);
      }
      const decisions = await influxQuery(influx, `SELECT count("to_mhz") AS n FROM "governor_decision"`);
      t.true(Number(decisions[0]?.rows[0]?.n) > 0, "governor_decision points");
      for (const p of governorDashboard.panels) {
        for (const target of p.targets) {
          const q = target.query.replace(/\$timeFilter/g, "time > now() - 1h").replace(/\$__interval/g, "10s").replace(/\$node\b/g, ".*");
          const series = await influxQuery(influx, q);
          t.true(series.some((s) => s.rows.some((row) => Object.entries(row).some(([k, v]) => k !== "time" && v !== null))), `governor/${p.title}: ${q}`);
          checked++;
        }
      }
      t.is(summary.arms.length, 3);
    },
  });
  t.truthy(r);
  const { summary, arms } = r!;
  t.deepEqual(arms.map((a) => a.arm), ["max", "static", "governor"]);
  for (const a of summary.arms) {
    t.true(a.energyKwh > 0 && a.requests > 0 && a.attainmentPct >= 0 && a.attainmentPct <= 100, JSON.stringify(a));
    t.true(a.gco2 !== undefined && a.gco2 > 0, `${a.arm}: gCO2 from the carbon series`);
  }
  t.truthy(summary.acceptance, "savings and attainment against the maximum clock");
  t.true(arms.every((a) => a.energy.windows >= 2 * 5), "1-s windows of both nodes");
  t.truthy(arms[2]!.governor && arms[2]!.governor.decisions > 0);
  const html = readFileSync(join(out, "report.html"), "utf8");
  t.true(html.includes("<svg") && html.includes("governor"));
  t.true(checked >= 7, `${checked} governor dashboard queries returned data`);
  t.log(readFileSync(join(out, "results.json"), "utf8").slice(0, 1500));
});
