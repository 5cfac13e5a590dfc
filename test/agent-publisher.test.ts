import test from "ava";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { createOutbox as createPublisher, MAX_BATCH_BYTES } from "../shared/outbox.ts";
import { requestBatcher } from "../services/agent/agent.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSpool } from "../shared/spool.ts";
import { encode, ensureStreams, eventsOf, subjects, type RequestBatch } from "../shared/mod.ts";
import { readStream, startTestNats } from "./helpers/nats-server.ts";
import { pause, until } from "./helpers/until.ts";

/**
 * The agent's publisher on a batched subject (REQUESTS), against a real nats-server: what one
 * linger gathers goes out as one message, in order, never over the size limit, and an outage
 * neither loses nor duplicates events.
 */
interface Ev {
  msgId: string;
  i: number;
  pad?: string;
}

async function setup(t: import("ava").ExecutionContext) {
  const nats = await startTestNats();
  const nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  await ensureStreams(await jetstreamManager(nc), ["REQUESTS", "POWER"]);
  t.teardown(async () => {
    await nc.close();
    await nats.stop();
  });
  return { nats, nc };
}


const SUBJECT = subjects.requests("n1");
const ev = (i: number, pad?: string): Ev => ({ msgId: `e${i}`, i, ...(pad ? { pad } : {}) });
const eventsIn = (msgs: { value: unknown }[]) => msgs.flatMap((m) => eventsOf(m.value as RequestBatch) as Ev[]);

test("publisher - a batched subject: one linger's events go out as one message, in order, a full batch at once; other subjects one by one", async (t) => {
  const { nats, nc } = await setup(t);
  const pub = createPublisher(nc, { lingerMs: 50, batched: [{ subject: SUBJECT, maxMessages: 400, key: "events", envelope: requestBatcher("n1") }] });
  for (let i = 0; i < 1000; i++) pub.publish(SUBJECT, ev(i));
  for (let i = 0; i < 3; i++) pub.publish(subjects.power("n1"), { msgId: `p${i}` });
  t.true(await pub.flush(5000));
  await pub.close();
  const msgs = await readStream(nats.url, "REQUESTS");
  // 400 + 400 sealed when full, the remaining 200 when the linger ends.
  t.deepEqual(msgs.map((m) => (m.value as RequestBatch).events.length), [400, 400, 200]);
  t.deepEqual(eventsIn(msgs).map((e) => e.i), Array.from({ length: 1000 }, (_, i) => i));
  t.true(msgs.every((m) => m.msgId === (m.value as RequestBatch).msgId && /^n1:reqs:\w+:\d+$/.test(m.msgId!)));
  t.is(new Set(msgs.map((m) => m.msgId)).size, msgs.length);
  t.is((await readStream(nats.url, "POWER")).length, 3);
  t.is(pub.stats().published, 6);
});

test("publisher - a batch over the size limit is split, never published whole", async (t) => {
  const { nats, nc } = await setup(t);
  const pub = createPublisher(nc, { lingerMs: 20, batched: [{ subject: SUBJECT, key: "events", envelope: requestBatcher("n1") }] });
  const pad = "x".repeat(90 * 1024);
  for (let i = 0; i < 20; i++) pub.publish(SUBJECT, ev(i, pad));
  t.true(await pub.flush(5000));
  await pub.close();
  const msgs = await readStream(nats.url, "REQUESTS");
  t.true(msgs.length > 1 && msgs.every((m) => m.bytes <= MAX_BATCH_BYTES), msgs.map((m) => m.bytes).join(","));
  t.deepEqual(eventsIn(msgs).map((e) => e.i), Array.from({ length: 20 }, (_, i) => i));
});

test("publisher - NATS down: events are sealed into the spool while publishing retries, then arrive once each, in order", async (t) => {
  const { nats, nc } = await setup(t);
  const pub = createPublisher(nc, { lingerMs: 20, publishTimeoutMs: 300, batched: [{ subject: SUBJECT, key: "events", envelope: requestBatcher("n1") }] });
  let i = 0;
  for (; i < 50; i++) pub.publish(SUBJECT, ev(i));
  t.true(await pub.flush(5000));
  await nats.stop();
  for (; i < 150; i++) {
    pub.publish(SUBJECT, ev(i));
    // Events keep coming through the outage, spread over a second: several retries see new ones.
    if (i % 10 === 0) await pause(100);
  }
  // Sealed as the retries go on (several batches), not held unsealed until NATS is back.
  await until(() => pub.stats().queued >= 2, 10_000, `the outage's events sealed into the spool as batches (${pub.stats().queued} so far)`);
  t.true(pub.stats().queued >= 2, `${pub.stats().queued} batches wait in the spool`);
  await nats.start();
  t.true(await pub.flush(15_000));
  await pub.close();
  const events = eventsIn(await readStream(nats.url, "REQUESTS"));
  t.deepEqual(events.map((e) => e.i), Array.from({ length: 150 }, (_, k) => k));
  t.is(pub.stats().dropped, 0);
});

test("publisher - what an earlier run left in the spool dir is published at start, and flush waits for it", async (t) => {
  const { nats, nc } = await setup(t);
  const dir = mkdtempSync(join(tmpdir(), "outbox-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const old = createSpool({ dir });
  for (let i = 0; i < 30; i++) old.push({ subject: subjects.power("n1"), msgId: `p${i}`, data: encode({ msgId: `p${i}`, i }) });
  await old.close();
  const pub = createPublisher(nc, { dir });
  t.is(await pub.countQueued(), 30);
  t.true(await pub.flush(5000));
  t.is(pub.stats().published, 30);
  await pub.close();
  t.deepEqual((await readStream<{ i: number }>(nats.url, "POWER")).map((m) => m.value.i), Array.from({ length: 30 }, (_, i) => i));
});

test("publisher - a message over the server's max payload is dropped and counted, not retried forever in front of the rest", async (t) => {
  const { nats, nc } = await setup(t);
  const pub = createPublisher(nc, { lingerMs: 0 });
  pub.publish(subjects.power("n1"), { msgId: "huge", pad: "x".repeat(2 * 1024 * 1024) } as { msgId: string });
  pub.publish(subjects.power("n1"), { msgId: "after" });
  t.true(await pub.flush(5000));
  t.is(pub.stats().dropped, 1);
  t.regex(pub.stats().lastError ?? "", /max payload/);
  t.deepEqual((await readStream(nats.url, "POWER")).map((m) => m.msgId), ["after"]);
  await pub.close();
});
