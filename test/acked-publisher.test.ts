import test from "ava";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { ensureStreams, RetryableError } from "../shared/mod.ts";
import { createAckedPublisher } from "../shared/acked-publisher.ts";
import { sharedTestStack } from "./helpers/stack.ts";

const stack = sharedTestStack(test);

test("acked publisher - 5,000 pipelined publishes each land once in the stream, a second publish of a msg id is reported a duplicate", async (t) => {
  const nc = await connect({ servers: stack().natsUrl });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await ensureStreams(jsm, ["ENERGY"], { replicas: 1 });
  const before = (await jsm.streams.info("ENERGY")).state.messages;
  const pub = createAckedPublisher(nc);
  t.teardown(() => pub.close());
  const acks = await Promise.all(Array.from({ length: 5000 }, (_, i) => pub.publish(`energy.v1.node-${i % 7}`, new Uint8Array([i & 255]), `ap-${i}`)));
  t.true(acks.every((a) => a.stream === "ENERGY" && a.seq > 0 && !a.duplicate));
  t.is(new Set(acks.map((a) => a.seq)).size, 5000);
  const again = await pub.publish("energy.v1.node-0", new Uint8Array([0]), "ap-0");
  t.true(again.duplicate);
  t.is((await jsm.streams.info("ENERGY")).state.messages - before, 5000);
  t.is(pub.inFlight(), 0);
});

test("acked publisher - a subject no stream takes is a retryable error at once, not a hang", async (t) => {
  const nc = await connect({ servers: stack().natsUrl });
  t.teardown(() => nc.close());
  const pub = createAckedPublisher(nc, { timeoutMs: 30_000 });
  t.teardown(() => pub.close());
  const t0 = Date.now();
  const err = await t.throwsAsync(pub.publish("nobody.listens.here", new Uint8Array([1]), "x-1"));
  t.true(err instanceof RetryableError, String(err));
  t.true(Date.now() - t0 < 5000);
});

test("acked publisher - close() rejects what waits for an ack, and later publishes", async (t) => {
  const nc = await connect({ servers: stack().natsUrl });
  t.teardown(() => nc.close());
  const pub = createAckedPublisher(nc);
  pub.close();
  await t.throwsAsync(pub.publish("energy.v1.n", new Uint8Array([1]), "c-1"), { instanceOf: RetryableError });
});
