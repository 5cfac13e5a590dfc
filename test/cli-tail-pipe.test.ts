import test from "ava";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { encode, ensureStreams, subjects, type RequestEvent } from "../shared/mod.ts";
import { startTestNats } from "./helpers/nats-server.ts";

/** `joulestream tail … | head -1`: the reader goes after one line; tail goes too, quietly. */
const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));

test("tail - a reader that closes the pipe after one line ends tail with exit 0 and no stack trace", async (t) => {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc), ["REQUESTS"]);
  const js = jetstream(nc);
  // More than a pipe buffer's worth after the first line, so tail is still writing when the reader goes.
  for (let i = 0; i < 2000; i++) {
    const ev: RequestEvent = { v: 1, kind: "request", msgId: `n1:req:r${i}:first`, node: "n1", instance: "i0", requestId: `r${i}`, tMs: 1000 + i, event: "first_token" };
    await js.publish(subjects.requests("n1"), encode(ev), { msgID: ev.msgId });
  }
  await nc.close();

  const p = spawn(process.execPath, [bin, "tail", "req.v1.n1", "--nats", nats.url, "--all"], { stdio: ["ignore", "pipe", "pipe"] });
  t.teardown(() => void (p.exitCode === null && p.kill("SIGKILL")));
  let stderr = "";
  p.stderr.on("data", (d) => (stderr += d));
  const exited = once(p, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  const lines = createInterface({ input: p.stdout });
  const [first] = (await once(lines, "line")) as [string];
  t.is((JSON.parse(first) as { seq: number }).seq, 1);
  lines.close();
  p.stdout.destroy(); // the reader goes, as head does after its line

  const [code, signal] = await exited;
  t.is(signal, null);
  t.is(code, 0, stderr);
  t.is(stderr, "", "nothing on stderr: no EPIPE, no stack");
});
