import test from "ava";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager, jetstream } from "@nats-io/jetstream";
import { ensureStreams, subjects } from "../shared/mod.ts";
import { bindConsumer, createReacker, REACK_AFTER_MS, type Done } from "../services/analyzer/consumers.ts";
import { startTestNats } from "./helpers/nats-server.ts";
import { until } from "./helpers/until.ts";

/**
 * Acknowledgements are sent once, and 10 s later only where the consumer's ack floor shows the
 * server did not take them (consumers.ts): a lost acknowledgement is repaired, a taken one is not
 * sent twice. On a real nats-server; the clock is the consumer's injected one.
 */
test("analyzer consumers - 10 s after an acknowledgement, only those the server did not take are sent again", async (t) => {
  t.timeout(60_000);
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const nc = await connect({ servers: nats.url, noAsyncTraces: true });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await ensureStreams(jsm, ["POWER"]);
  for (let i = 0; i < 10; i++) await js.publish(subjects.power("n1"), new Uint8Array([i]));

  let now = 1_000_000;
  const clock = () => now;
  let handled = 0;
  const c = await bindConsumer({ nc, jsm, js, spec: { stream: "POWER", durable: "re" }, clock, handle: (_m, token) => (token.done(), void handled++) });
  t.teardown(() => c.close());
  await until(() => handled === 10, 10_000, "the 10 messages to be read");
  const done = c.takeDone();
  t.deepEqual(done.seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  const half = (from: number, to: number): Done => ({ replies: done.replies.slice(from, to), seqs: done.seqs.slice(from, to) });
  const pending = async () => (await jsm.consumers.info("POWER", "re")).num_ack_pending;

  // The first five acknowledged as the checkpoint does; the last five "lost": recorded as sent,
  // never sent (what a connection drop or a leader change does to them).
  c.ack(half(0, 5));
  const lost = createReacker({ floor: async () => (await jsm.consumers.info("POWER", "re")).ack_floor.stream_seq, send: (r) => nc.publish(r, "+ACK"), clock });
  lost.sent(half(5, 10));
  await until(async () => (await pending()) === 5, 10_000, "the first five to be taken");

  // Not due yet: nothing is sent again.
  now += REACK_AFTER_MS - 1;
  c.ack({ replies: [], seqs: [] });
  lost.sent({ replies: [], seqs: [] });
  await lost.looking();
  t.is(lost.reacked(), 0);
  t.is(await pending(), 5);

  // Due: the floor (5) covers the consumer's five, so none of them goes twice; the lost five do.
  now += 1;
  c.ack({ replies: [], seqs: [] });
  lost.sent({ replies: [], seqs: [] });
  await lost.looking();
  t.is(lost.reacked(), 5);
  await until(async () => (await pending()) === 0, 10_000, "the lost five to be taken on their second sending");
  t.is(c.reacked(), 0);
});

test("analyzer consumers - where the ack floor cannot be read, everything due is sent again", async (t) => {
  const sent: string[] = [];
  let now = 0;
  const r = createReacker({ floor: () => Promise.reject(new Error("no responders")), send: (x) => sent.push(x), clock: () => now });
  r.sent({ replies: ["a", "b"], seqs: [1, 2] });
  now = REACK_AFTER_MS;
  r.sent({ replies: ["c"], seqs: [3] });
  await r.looking();
  t.deepEqual(sent, ["a", "b"]);
  t.is(r.reacked(), 2);
});
