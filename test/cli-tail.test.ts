import test from "ava";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { encode, ensureStreams, subjects, type RequestBatch, type RequestEvent } from "../shared/mod.ts";
import { startTestNats } from "./helpers/nats-server.ts";

/** `joulestream tail` against a real nats-server: messages as JSON lines, batches unrolled with --events. */
const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));

/** A nats-server whose REQUESTS stream holds a batch of three events (r0-r2), then one lone event (r3). */
async function requestsStored(t: import("ava").ExecutionContext) {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc), ["REQUESTS"]);
  const ev = (i: number): RequestEvent => ({ v: 1, kind: "request", msgId: `n1:req:r${i}:first`, node: "n1", instance: "i0", requestId: `r${i}`, tMs: 1000 + i, event: "first_token" });
  const batch: RequestBatch = { v: 1, kind: "request_batch", msgId: "n1:reqs:run:0", node: "n1", events: [ev(0), ev(1), ev(2)] };
  const js = jetstream(nc);
  await js.publish(subjects.requests("n1"), encode(batch), { msgID: batch.msgId });
  await js.publish(subjects.requests("n1"), encode(ev(3)), { msgID: ev(3).msgId });
  await nc.close();
  // --timeout: a run that waits for more than the stream holds ends instead of hanging the test.
  return async (...extra: string[]) => {
    const { stdout } = await promisify(execFile)(process.execPath, [bin, "tail", "req.v1.n1", "--nats", nats.url, "--all", "--timeout", "5", ...extra]);
    return stdout.trim().split("\n").map((l) => JSON.parse(l) as { seq: number; batch?: string; data: { kind: string; requestId?: string } });
  };
}

test("tail - prints each message as a JSON line; --events prints a REQUESTS batch one event per line", async (t) => {
  const run = await requestsStored(t);
  const plain = await run("--count", "2");
  t.deepEqual(plain.map((l) => [l.seq, l.data.kind]), [[1, "request_batch"], [2, "request"]]);
  const events = await run("--events", "--count", "4");
  t.deepEqual(events.map((l) => [l.seq, l.batch, l.data.requestId]), [[1, "n1:reqs:run:0", "r0"], [1, "n1:reqs:run:0", "r1"], [1, "n1:reqs:run:0", "r2"], [2, undefined, "r3"]]);
});

test("tail - with --events, --count N stops after N events, inside a batch too, and --help says so", async (t) => {
  const run = await requestsStored(t);
  t.deepEqual((await run("--events", "--count", "2")).map((l) => [l.seq, l.data.requestId]), [[1, "r0"], [1, "r1"]]);
  const { stdout: help } = await promisify(execFile)(process.execPath, [bin, "tail", "--help"]);
  t.regex(help, /--count N\s+exit after N messages \(with --events: after N events/);
});
