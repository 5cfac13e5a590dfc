import test from "ava";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { influxQuery, type InfluxTarget } from "../shared/mod.ts";
import { startAnalyzer } from "../services/analyzer/analyzer.ts";
import { createInfluxSink, Point } from "../services/analyzer/influx-sink.ts";
import { createPointWriter } from "../services/analyzer/point-writer.ts";
import { startFleet } from "../services/fleet/emulator.ts";
import { readResults } from "./helpers/analyzer-harness.ts";
import { compareWithTruth } from "./helpers/fleet-truth.ts";
import { withStack } from "./helpers/stack.ts";
import { until } from "./helpers/until.ts";

/**
 * The analyzer's stages against what goes wrong around them (issue 15): a consumer deleted under
 * it, InfluxDB down while it stops, a point InfluxDB refuses for good among good ones.
 */

test("analyzer - a consumer deleted under a running analyzer is recreated from where it stood, logged and counted; nothing is lost", async (t) => {
  t.timeout(90_000);
  const stack = await withStack(t);
  const nc = await connect({ servers: stack.natsUrl, noAsyncTraces: true });
  t.teardown(() => nc.close());
  const log: string[] = [];
  const analyzer = await startAnalyzer({ nc, name: "del", sink: createInfluxSink({ url: stack.influxUrl, database: stack.database, api: "v1" }), log: (l) => log.push(l) });
  t.teardown(() => analyzer.stop());
  const first = startFleet({ nc, nodes: 3, durationS: 10, seed: 4, nodePrefix: "early" });
  await first.done();
  t.true(await analyzer.idle(30_000));
  // An operator (or a replica's clean-up) deletes the POWER consumer while the analyzer runs.
  await (await jetstreamManager(nc)).consumers.delete("POWER", "del-power");
  const second = startFleet({ nc, nodes: 3, durationS: 10, seed: 5, nodePrefix: "late" });
  const report = await second.done();
  await until(() => analyzer.stats().consumersRecreated >= 1, 20_000, "the consumer to be recreated");
  t.true(await analyzer.idle(30_000));
  t.true(log.some((l) => l.includes("del-power: the consumer was deleted; recreated from stream seq")), log.join("\n"));
  const stored = await readResults({ url: stack.influxUrl, database: stack.database });
  const expected = new Map([...first.expectedRequests(), ...second.expectedRequests()]);
  t.is(stored.requests.length, expected.size);
  const { worstRelErr, problems } = compareWithTruth(stored.requests, expected);
  t.deepEqual(problems, []);
  t.true(worstRelErr < 1e-9, `worst relative error ${worstRelErr}`);
  t.is(stored.incompleteWindows, 0);
  t.is(stored.nodeWindows, report.truth.nodeWindows * 2);
});

test("analyzer - stop() while InfluxDB is frozen returns within its grace, and the next start stores what it could not", async (t) => {
  t.timeout(90_000);
  const stack = await withStack(t);
  const nc = await connect({ servers: stack.natsUrl, noAsyncTraces: true });
  t.teardown(() => nc.close());
  const influx: InfluxTarget = { url: stack.influxUrl, database: stack.database };
  const sink = () => createInfluxSink({ ...influx, api: "v1", timeoutMs: 60_000 });
  const log: string[] = [];
  const a = await startAnalyzer({ nc, name: "grace", sink: sink(), stopGraceMs: 2000, log: (l) => log.push(l) });
  // InfluxDB freezes (SIGSTOP: connections hang, nothing answers) before the fleet's data comes.
  process.kill(stack.pids.influxd, "SIGSTOP");
  let thawed = false;
  const thaw = () => {
    if (!thawed) process.kill(stack.pids.influxd, "SIGCONT");
    thawed = true;
  };
  t.teardown(thaw);
  const fleet = startFleet({ nc, nodes: 4, durationS: 20, seed: 6 });
  const report = await fleet.done();
  await until(() => a.stats().requestsEmitted === fleet.expectedRequests().size, 20_000, "every request joined (and not stored)");
  const t0 = Date.now();
  await a.stop();
  const stopMs = Date.now() - t0;
  thaw();
  t.true(stopMs < 2000 + 2500, `stop() took ${stopMs} ms with a 2000 ms grace`);
  // The grace left when the partition's stop began (a millisecond or two under the analyzer's 2000).
  t.true(log.some((l) => /stopped before its outputs were stored \((19\d\d|2000) ms grace\)/.test(l)), log.join("\n"));

  const b = await startAnalyzer({ nc, name: "grace", sink: sink() });
  t.true(await b.idle(60_000));
  await b.stop();
  const stored = await readResults(influx);
  t.is(stored.nodeWindows, report.truth.nodeWindows);
  t.is(stored.requests.length, fleet.expectedRequests().size);
  const { worstRelErr, problems } = compareWithTruth(stored.requests, fleet.expectedRequests());
  t.deepEqual(problems, []);
  t.true(worstRelErr < 1e-9);
});

test("point writer - a batch InfluxDB refuses a point of is split until that point alone is dropped; the batches after it are stored", async (t) => {
  const stack = await withStack(t);
  const influx: InfluxTarget = { url: stack.influxUrl, database: stack.database };
  const sink = createInfluxSink({ ...influx, api: "v1" });
  const log: string[] = [];
  const writer = createPointWriter(sink, { lingerMs: 10, maxBatchPoints: 100, log: (l) => log.push(l) });
  const T = Date.now() - 60_000;
  const pt = (i: number, v: number | string) => {
    const p = new Point("m").tag("k", String(i % 3));
    return (typeof v === "number" ? p.floatField("x", v) : p.stringField("x", v)).timestamp(String((T + i) * 1e6));
  };
  await writer.write([pt(0, 1)]); // x is a float from now on
  // 40 points of which one is a string: a field type conflict, 400 for the whole batch.
  const poisoned = writer.write(Array.from({ length: 40 }, (_, i) => pt(1 + i, i === 17 ? "oops" : i)));
  const after = [writer.write(Array.from({ length: 30 }, (_, i) => pt(100 + i, i))), writer.write([pt(200, 2)])];
  await Promise.all([poisoned, ...after]);
  t.is(writer.stats().rejected, 1);
  t.true(log.some((l) => l.startsWith("InfluxDB refused a point, dropped")));
  const n = await influxQuery(influx, `SELECT count("x") AS n FROM "m"`);
  t.is(Number(n[0]?.rows[0]?.n), 1 + 39 + 30 + 1);
  await writer.close();
});
