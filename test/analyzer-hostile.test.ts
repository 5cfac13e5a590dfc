import test from "ava";
import { connect } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { encode, influxQuery, subjects, withTimeout, type PowerBatch, type RequestEvent, type WorkWindow } from "../shared/mod.ts";
import { startStackAnalyzer } from "./helpers/analyzer-harness.ts";
import { withStack } from "./helpers/stack.ts";

const power = (node: string, start: number, end: number): PowerBatch => ({
  v: 1, kind: "power", msgId: `${node}:p:${start}`, node, seq: 0, windowStartMs: start, windowEndMs: end, source: "fake",
  gpus: [{ gpu: 0, uuid: "G0", tMs: [start + 500, end - 1], powerMw: [300_000, 300_000], energyMj: [1000 + 150, 1000 + 300], energyStartMj: 1000, startTMs: start }],
  instances: ["a"],
});
const work = (node: string, start: number, end: number, reqs: { requestId: string; prefillTokens: number; decodeTokens: number }[]): WorkWindow => ({
  v: 1, kind: "work", msgId: `${node}:w:${start}`, node, instance: "a", gpus: [0], windowStartMs: start, windowEndMs: end, requests: reqs,
});
const startEv = (node: string, id: string, tMs: number, extra: object = {}): RequestEvent => ({ v: 1, kind: "request", msgId: `${node}:${id}:s`, node, instance: "a", requestId: id, tMs, event: "start", endpoint: "completions", stream: false, ...extra } as RequestEvent);
const endEv = (node: string, id: string, tMs: number): RequestEvent => ({ v: 1, kind: "request", msgId: `${node}:${id}:e`, node, instance: "a", requestId: id, tMs, event: "end", status: "ok", promptTokens: 5, outputTokens: 7 });

async function oneRequest(js: ReturnType<typeof jetstream>, node: string, id: string, T: number, startExtra: object = {}, subjNode = node) {
  await js.publish(subjects.requests(subjNode), encode(startEv(node, id, T + 10, startExtra)));
  for (let w = 0; w < 2; w++) {
    const s = T + w * 1000;
    await js.publish(subjects.power(subjNode), encode(power(node, s, s + 1000)));
    await js.publish(subjects.work(subjNode), encode(work(node, s, s + 1000, w === 0 ? [{ requestId: id, prefillTokens: 10, decodeTokens: 3 }] : [])));
  }
  await js.publish(subjects.requests(subjNode), encode(endEv(node, id, T + 900)));
}

/**
 * The analyzer on a real nats-server and influxd against what a hostile client or node, or a shared
 * database, can send it: one refused point or one forged message must never stop it for the fleet.
 */
const stored = async (influx: { url: string; database: string }) => {
  const r = await influxQuery(influx, "SELECT request_id, energy_j, workload_class FROM request_energy GROUP BY node");
  return r.flatMap((s) => s.rows.map((row) => `${s.tags.node}/${row.request_id}`)).sort();
};

test("analyzer - a client-chosen workload class ending in a backslash is stored, and other nodes' data flows on", async (t) => {
  t.timeout(90_000);
  const stack = await withStack(t);
  const logs: string[] = [];
  const h = await startStackAnalyzer(stack);
  t.teardown(() => withTimeout(h.close(), 2000, "closing the analyzer").catch(() => {}));
  const nc = await connect({ servers: stack.natsUrl });
  t.teardown(() => nc.close());
  const js = jetstream(nc);
  const T = Math.floor(Date.now() / 1000) * 1000 - 60_000;
  await oneRequest(js, "node-1", "good-before", T);
  t.true(await h.analyzer.idle(15_000));
  t.deepEqual(await stored(h.influx), ["node-1/good-before"]);
  // One request whose x-joulestream-class header was `batch\` (any API client can send it).
  await oneRequest(js, "node-2", "evil", T, { workloadClass: "batch\\" });
  // Another node's ordinary traffic afterwards.
  await oneRequest(js, "node-3", "good-after", T);
  const idle = await withTimeout(h.analyzer.idle(20_000), 25_000, "idle()").catch((err: Error) => err.message);
  const s = h.analyzer.stats();
  t.log(`idle=${idle} sinkRetries=${s.sinkRetries} acked=${s.acked} stored=${JSON.stringify(await stored(h.influx))}`);
  t.is(idle, true, "analyzer never caught up");
  t.deepEqual(await stored(h.influx), ["node-1/good-before", "node-2/evil", "node-3/good-after"]);
});

test("analyzer - data a node publishes in another node's name is dead-lettered (per-node permissions hold)", async (t) => {
  t.timeout(60_000);
  const stack = await withStack(t);
  const h = await startStackAnalyzer(stack);
  t.teardown(() => h.close().catch(() => {}));
  const nc = await connect({ servers: stack.natsUrl });
  t.teardown(() => nc.close());
  const js = jetstream(nc);
  const T = Math.floor(Date.now() / 1000) * 1000 - 60_000;
  // Published on node "evil"'s subjects (all its permissions allow), bodies claim node "victim".
  await oneRequest(js, "victim", "forged", T, {}, "evil");
  t.true(await h.analyzer.idle(15_000));
  const r = await influxQuery(h.influx, "SELECT measured_j FROM node_energy GROUP BY node");
  const nodes = r.map((s) => s.tags.node);
  t.log(`node_energy series: ${JSON.stringify(nodes)}; requests: ${JSON.stringify(await stored(h.influx))}; deadLettered=${h.analyzer.stats().deadLettered}`);
  t.false(nodes.includes("victim"), "the analyzer stored victim's energy from evil's subject");
  t.true(h.analyzer.stats().deadLettered > 0, "dead-lettered");
});

test("analyzer - a point InfluxDB refuses for good (field type conflict) is dropped and counted; the rest is stored", async (t) => {
  t.timeout(90_000);
  const stack = await withStack(t);
  const T = Math.floor(Date.now() / 1000) * 1000 - 60_000;
  // e.g. an older tool or a hand-written backfill stored an integer in the same shard
  const res = await fetch(`${stack.influxUrl}/write?db=${stack.database}&precision=ms`, { method: "POST", body: `instance_energy,node=old energy_j=1i ${T}` });
  t.is(res.status, 204);
  const h = await startStackAnalyzer(stack);
  t.teardown(() => withTimeout(h.close(), 2000, "closing the analyzer").catch(() => {}));
  const nc = await connect({ servers: stack.natsUrl });
  t.teardown(() => nc.close());
  const js = jetstream(nc);
  await oneRequest(js, "node-1", "r1", T);
  const idle = await withTimeout(h.analyzer.idle(20_000), 25_000, "idle()").catch((err: Error) => err.message);
  const s = h.analyzer.stats();
  t.log(`idle=${idle} sinkRetries=${s.sinkRetries} pointsRejected=${(s as { pointsRejected?: number }).pointsRejected} stored=${JSON.stringify(await stored(h.influx))}`);
  t.is(idle, true);
  t.deepEqual(await stored(h.influx), ["node-1/r1"]);
  t.true(s.pointsRejected >= 1, "the refused point is counted");
});
