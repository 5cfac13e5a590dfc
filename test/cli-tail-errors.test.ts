import test from "ava";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { encode, ensureStreams, subjects, type RequestEvent } from "../shared/mod.ts";
import { partitionMappings } from "../services/analyzer/partitions.ts";
import { startTestNats } from "./helpers/nats-server.ts";

/** Review: `tail <kind>.v1.<node>` on a partitioned server, and the server's refusals as one-line errors. */
const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));
const tail = (url: string, ...args: string[]) =>
  promisify(execFile)(process.execPath, [bin, "tail", ...args, "--nats", url, "--all", "--timeout", "1"], { timeout: 20_000 }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );

test("tail - a node's subject shows its messages when the server partitions them (power|work|req.v1.<node>.<p>)", async (t) => {
  const nats = await startTestNats({ config: partitionMappings(4) });
  t.teardown(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc), ["REQUESTS"]);
  const ev: RequestEvent = { v: 1, kind: "request", msgId: "node-1:req:r0:first", node: "node-1", instance: "i0", requestId: "r0", tMs: 1000, event: "first_token" };
  await jetstream(nc).publish(subjects.requests("node-1"), encode(ev), { msgID: ev.msgId });
  await nc.close();
  const r = await tail(nats.url, "req.v1.node-1", "--count", "1");
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /"requestId":"r0"/);
});

test("tail - a subject outside its stream, or a stream not created yet, is a one-line error (exit 2)", async (t) => {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc), ["REQUESTS"]);
  await nc.close();
  for (const s of ["req.v1", "req.*.n1", "audit.v1.>", "req.v1.n1 "]) {
    const r = await tail(nats.url, s);
    t.is(r.code, 2, `${s}: ${r.stderr}`);
    t.notRegex(r.stderr, /\n\s+at /, `${s}: no stack trace`);
  }
});
