import test from "ava";
import { connect } from "@nats-io/transport-node";
import { startAnalyzer, type Analyzer } from "../services/analyzer/analyzer.ts";
import { createInfluxSink } from "../services/analyzer/influx-sink.ts";
import { partitionMappings } from "../services/analyzer/partitions.ts";
import { startFleet } from "../services/fleet/emulator.ts";
import { readResults } from "./helpers/analyzer-harness.ts";
import type { InfluxTarget } from "../shared/mod.ts";
import { withStack } from "./helpers/stack.ts";
import { until } from "./helpers/until.ts";

/** Replicas of one analyzer name share the work through leases in a KV bucket. */
async function replica(t: import("ava").ExecutionContext, natsUrl: string, influx: InfluxTarget, name: string, partitions: number): Promise<Analyzer> {
  const nc = await connect({ servers: natsUrl });
  const a = await startAnalyzer({ nc, name, partitions, sink: createInfluxSink({ ...influx, api: "v1" }) });
  t.teardown(async () => {
    await a.stop();
    await nc.close();
  });
  return a;
}

test("replicas - two replicas split 4 node partitions and together store every window and request exactly once", async (t) => {
  t.timeout(120_000);
  const stack = await withStack(t, { natsExtraConfig: partitionMappings(4) });
  const influx: InfluxTarget = { url: stack.influxUrl, database: stack.database };
  const a = await replica(t, stack.natsUrl, influx, "pair", 4);
  const b = await replica(t, stack.natsUrl, influx, "pair", 4);
  await until(() => a.stats().partitions.length === 2 && b.stats().partitions.length === 2, 20_000, "an even split of the partitions");
  t.deepEqual([...a.stats().partitions, ...b.stats().partitions].sort(), [0, 1, 2, 3]);

  const nc = await connect({ servers: stack.natsUrl });
  t.teardown(() => nc.close());
  const report = await startFleet({ nc, nodes: 8, durationS: 10, ratePerInstanceS: 2, seed: 4 }).done();
  t.true(await a.idle(60_000));
  t.true(await b.idle(60_000));
  const stored = await readResults(influx);
  t.is(stored.nodeWindows, report.truth.nodeWindows);
  t.true(Math.abs(stored.measuredJ - report.truth.measuredJ) <= 1e-6 * report.truth.measuredJ);
  t.is(stored.requests.length, report.requests.finished);
  t.is(stored.incompleteWindows, 0);
  // Each replica did part of the work, and no request was stored twice.
  t.true(a.stats().requestsEmitted > 0 && b.stats().requestsEmitted > 0);
  t.is(a.stats().requestsEmitted + b.stats().requestsEmitted, report.requests.finished);
});

test("replicas - a standby replica takes over when the active one stops, and nothing is lost", async (t) => {
  t.timeout(120_000);
  const stack = await withStack(t);
  const influx: InfluxTarget = { url: stack.influxUrl, database: stack.database };
  const a = await replica(t, stack.natsUrl, influx, "ha", 0);
  const b = await replica(t, stack.natsUrl, influx, "ha", 0);
  t.deepEqual(a.stats().partitions, [0]);
  t.deepEqual(b.stats().partitions, []);
  const nc = await connect({ servers: stack.natsUrl });
  t.teardown(() => nc.close());
  const fleet = startFleet({ nc, nodes: 3, durationS: 20, ratePerInstanceS: 2, seed: 8 });
  await a.stop();
  await until(() => b.stats().partitions.length === 1, 20_000, "the standby to take over");
  const report = await fleet.done();
  t.true(await b.idle(60_000));
  const stored = await readResults(influx);
  t.is(stored.nodeWindows, report.truth.nodeWindows);
  t.is(stored.requests.length, report.requests.finished);
});
