import test from "ava";
import { connect } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { FAST_START_MS, startFleet } from "../services/fleet/emulator.ts";
import { createNodeModel } from "../services/fleet/node-model.ts";
import { readResults, startStackAnalyzer } from "./helpers/analyzer-harness.ts";
import { sharedToken } from "../services/analyzer/intake.ts";
import { deadLetter, decode, decodeAs, encode, subjects, type RequestBatch, type RequestEvent } from "../shared/mod.ts";
import { withStack } from "./helpers/stack.ts";
import { compareWithTruth, relErr } from "./helpers/fleet-truth.ts";

/**
 * REQUESTS batches (what agents publish) in the analyzer: each event joins as if it came alone, a
 * bad event is dead-lettered alone, and the batch is acknowledged only when all of its events are.
 */

test("sharedToken - a batch is done with its last event's share, once, whatever the order; a share done twice counts once", (t) => {
  let done = 0;
  const whole = { done: () => done++ };
  const shares = sharedToken(whole, 3);
  shares[2]!.done();
  shares[2]!.done();
  shares[0]!.done();
  t.is(done, 0);
  shares[1]!.done();
  t.is(done, 1);
  shares[1]!.done();
  t.is(done, 1);
  t.is(sharedToken(whole, 1)[0], whole);
});

test("analyzer - batched and single REQUESTS messages give the emulator's truth; a bad event in a batch is dead-lettered alone", async (t) => {
  t.timeout(90_000);
  const stack = await withStack(t);
  const h = await startStackAnalyzer(stack, { allowedLatenessMs: 3600_000 });
  t.teardown(() => h.close());
  const nc = await connect({ servers: stack.natsUrl });
  t.teardown(() => nc.close());

  // A batch with copies of two of the fleet's real events around a broken one: the copies are
  // duplicates of what the fleet publishes (by event msgId), the broken one goes to the DLQ.
  const model = createNodeModel({ node: "batch-0000", seed: 7, ratePerInstanceS: 3 });
  let real: RequestEvent[] = [];
  for (let ws = FAST_START_MS; real.length < 2; ws += 1000) real = model.step(ws).events;
  const bad = { v: 1, kind: "request", msgId: "bad-1", node: "batch-0000", event: "end" };
  const injected: RequestBatch = { v: 1, kind: "request_batch", msgId: "batch-0000:reqs:injected", node: "batch-0000", events: [real[0], bad, real[1]] };
  await jetstream(nc).publish(subjects.requests("batch-0000"), encode(injected), { msgID: injected.msgId });

  const batched = startFleet({ nc, nodes: 2, durationS: 8, ratePerInstanceS: 3, seed: 7, nodePrefix: "batch" });
  const single = startFleet({ nc, nodes: 2, durationS: 8, ratePerInstanceS: 3, seed: 8, nodePrefix: "single", batchRequests: false });
  const [rb, rs] = await Promise.all([batched.done(), single.done()]);
  t.true(rb.published.requests < rb.requests.started, `batched: ${rb.published.requests} REQUESTS messages for ${rb.requests.started} requests`);
  t.true(rs.published.requests >= 2 * rs.requests.started, `single: ${rs.published.requests} REQUESTS messages for ${rs.requests.started} requests`);
  t.true(await h.analyzer.idle(60_000), "every message acknowledged, the injected batch included");

  const stored = await readResults(h.influx);
  const expected = new Map([...batched.expectedRequests(), ...single.expectedRequests()]);
  t.is(stored.requests.length, rb.requests.finished + rs.requests.finished);
  t.is(stored.requests.length, expected.size);
  const { worstRelErr, problems } = compareWithTruth(stored.requests, expected);
  t.deepEqual(problems, []);
  t.true(worstRelErr < 1e-9, `worst relative error of a request's energy: ${worstRelErr}`);
  t.true(relErr(stored.measuredJ, rb.truth.measuredJ + rs.truth.measuredJ) < 1e-6);

  const stats = h.analyzer.stats();
  t.is(stats.deadLettered, 1);
  t.true(stats.join.duplicates >= 2, `${stats.join.duplicates} duplicates`);
  const dl = await (await jetstream(nc).consumers.get("DEADLETTER")).next({ expires: 5000 });
  const d = dl ? decodeAs(deadLetter, dl.data) : undefined;
  t.true(d?.ok);
  if (d?.ok) {
    t.is(d.value.reason, "schema");
    t.true(d.value.detail.startsWith("event 1 of the batch: "), d.value.detail);
    t.deepEqual(decode(d.value.data), bad);
    t.is(d.value.subject, subjects.requests("batch-0000"));
  }
});
