import test from "ava";
import { readFileSync } from "node:fs";
import { influxQuery, type InfluxTarget } from "../shared/mod.ts";
import { createInfluxSink, Point } from "../services/analyzer/influx-sink.ts";
import { ensureRollups, rollupBackfill, RAW_RP, ROLLUP_RP } from "../services/analyzer/rollups.ts";
import { renderRollups, ROLLUPS_FILE } from "../infra/influxdb/generate-rollups.ts";
import { withStack } from "./helpers/stack.ts";

test("rollups - the shipped infra/influxdb/rollups.influxql is what rollups.ts generates", (t) => {
  t.is(readFileSync(ROLLUPS_FILE, "utf8"), renderRollups());
});

test("rollups - retention policies and continuous queries are created (twice without error), raw becomes the default, and a backfill sums raw windows into 1-min rollups", async (t) => {
  const stack = await withStack(t);
  const influx: InfluxTarget = { url: stack.influxUrl, database: stack.database };
  await ensureRollups(influx);
  await ensureRollups(influx); // a restarted analyzer runs them again
  const rps = (await influxQuery(influx, `SHOW RETENTION POLICIES ON "${stack.database}"`))[0]!.rows;
  t.deepEqual(rps.filter((r) => r.default === true).map((r) => r.name), [RAW_RP]);
  t.true(rps.some((r) => r.name === ROLLUP_RP));
  const cqs = (await influxQuery(influx, "SHOW CONTINUOUS QUERIES")).flatMap((s) => s.rows.map((r) => String(r.name)));
  t.deepEqual(cqs.sort(), ["cq_gpu_energy_1m", "cq_instance_energy_1m", "cq_node_energy_1m", "cq_request_energy_1m"]);

  // 120 one-second windows of one node at 100 J each, written without naming a retention policy.
  const t0 = Math.floor(Date.now() / 60_000) * 60_000 - 180_000;
  const sink = createInfluxSink({ url: stack.influxUrl, database: stack.database, api: "v1" });
  await sink.write(Array.from({ length: 120 }, (_, i) => new Point("node_energy").tag("node", "n1").floatField("measured_j", 100).floatField("attributed_j", 60).floatField("idle_j", 40).floatField("unassigned_j", 0).timestamp(String((t0 + i * 1000) * 1e6))));
  const raw = await influxQuery(influx, `SELECT sum("measured_j") AS j FROM "${RAW_RP}"."node_energy"`);
  t.is(Number(raw[0]?.rows[0]?.j), 12_000, "written to the default (raw) policy");
  for (const s of rollupBackfill(stack.database, t0, t0 + 120_000)) await influxQuery(influx, s);
  const rolled = (await influxQuery(influx, `SELECT "measured_j", "windows" FROM "${ROLLUP_RP}"."node_energy" GROUP BY "node"`))[0];
  t.is(rolled?.tags.node, "n1", "tags are kept");
  t.deepEqual(rolled?.rows.map((r) => [Number(r.measured_j), Number(r.windows)]), [[6000, 60], [6000, 60]]);
});
