import test from "ava";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { openResultsOutbox } from "../services/loadgen/results-outbox.ts";
import { runCoordinated } from "../services/loadgen/coordinator.ts";
import { runLoad } from "../services/loadgen/runner.ts";
import { startWorker } from "../services/loadgen/worker.ts";
import { workloadOf } from "../services/loadgen/source-spec.ts";
import { startEchoServer } from "./helpers/echo-server.ts";
import { ConfigError } from "../shared/errors.ts";
import type { LoadResult } from "../shared/messages/load.ts";
import { ensureStreams } from "../shared/streams.ts";
import { readStream, startTestNats } from "./helpers/nats-server.ts";
import { pause, until } from "./helpers/until.ts";

/**
 * The load generator's results go to LOAD through an outbox (memory, then disk): an outage of the
 * broker delays them, in order, instead of losing them (issue 19: a 64 s outage lost 99 of 207).
 */
const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));
const tempDir = (t: import("ava").ExecutionContext, prefix: string) => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
};

test("load outbox - NATS down for 12 s while results are published: after it returns every result is in LOAD once, in the order produced", async (t) => {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const server = await startEchoServer({ tokensPerChunk: 1 << 20 });
  t.teardown(() => server.stop());
  const nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  t.teardown(() => nc.close());
  await ensureStreams(await jetstreamManager(nc), ["LOAD"]);
  const outbox = openResultsOutbox(nc, { dir: tempDir(t, "load-outbox-"), publishTimeoutMs: 1000 });
  const produced: string[] = [];
  const run = runLoad({
    source: workloadOf({ kind: "synthetic", cls: "short", rate: 20, durationS: 16, arrival: "constant" }),
    runId: "outage",
    targets: [server.url],
    onResult: (r) => {
      produced.push(r.msgId);
      outbox.publish(r);
    },
  });
  await until(() => produced.length >= 20, 10_000, "the first results");
  await nats.stop();
  const downAt = produced.length;
  await pause(12_000); // the outage must last: results pile up past the 1 s publish timeout and its retries
  const whileDown = produced.length - downAt;
  t.true(outbox.stats().queued > 0 && outbox.stats().retries > 0, JSON.stringify(outbox.stats()));
  await nats.start();
  await run;
  t.true(await outbox.drain(20_000), `still queued: ${outbox.stats().queued}`);
  t.deepEqual(await outbox.close(), { held: 0 });
  t.log(`${produced.length} results, ${whileDown} produced while NATS was down; ${outbox.stats().retries} retries`);
  t.true(whileDown >= 200, `${whileDown} results produced during the outage`);
  const inLoad = await readStream<LoadResult>(nats.url, "LOAD");
  t.is(produced.length, 320);
  t.deepEqual(inLoad.map((m) => m.msgId), produced, "each once, in the order produced");
  t.true(inLoad.every((m) => m.msgId === m.value.msgId));
});

test("load outbox - a spool dir another live process holds is refused by name; the default dir gives way to one of its own", async (t) => {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const dir = tempDir(t, "load-outbox-busy-");
  const first = openResultsOutbox(nc, { dir });
  const err = t.throws(() => openResultsOutbox(nc, { dir }), { instanceOf: ConfigError });
  t.is(err.key, "--spool-dir");
  t.regex(err.message, new RegExp(`in use by process ${process.pid}`));
  const second = openResultsOutbox(nc, { dir, ifBusy: "own-dir" });
  t.is(second.dir, `${dir}-${process.pid}`);
  await second.close();
  t.false(existsSync(`${dir}-${process.pid}`), "an own dir left empty is removed");
  await first.close();
  const third = openResultsOutbox(nc, { dir }); // released at close
  await third.close();
});

test("load cli - results NATS does not take within --drain-timeout are held on disk and said to be; the next run with that --spool-dir publishes them first", async (t) => {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const server = await startEchoServer({ tokensPerChunk: 1 << 20 });
  t.teardown(() => server.stop());
  const spool = tempDir(t, "load-cli-spool-");
  const out = join(tempDir(t, "load-cli-out-"), "r1.jsonl");
  const args = (runId: string, durationS: number) => ["load", "--workload", "short", "--rate", "40", "--duration", String(durationS), "--arrival", "constant", "--target", server.url, "--nats", nats.url, "--run-id", runId, "--spool-dir", spool, "--drain-timeout", "3", "--no-progress"];

  // Run 1: NATS goes away as soon as it starts sending and stays away past its drain timeout.
  const first = execFile(process.execPath, [bin, ...args("r1", 2), "--out", out], { timeout: 50_000 });
  let err1 = "";
  first.stderr!.on("data", (d) => (err1 += d));
  const code1 = new Promise<number | null>((r) => first.once("exit", r));
  await until(() => /sending to/.test(err1), 30_000, "run 1 to start sending");
  await nats.stop();
  t.is(await code1, 1, err1);
  t.log(err1);
  const held = Number(/(\d+) results are NOT in LOAD yet/.exec(err1)?.[1]);
  t.true(held > 0, err1);
  t.regex(err1, new RegExp(`held in ${spool.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}; the next joulestream load run with --spool-dir`));
  t.true(readdirSync(spool).some((f) => f.endsWith(".seg")));
  t.regex(err1, /waiting for NATS to take \d+ results \(\d+ s of 3 s\)/, "progress while it waits");

  // Run 2, NATS back: run 1's results go first, then its own.
  await nats.start();
  const second = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile(process.execPath, [bin, ...args("r2", 1)], { timeout: 50_000 }, (e, _o, stderr) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stderr })),
  );
  t.log(second.stderr);
  t.is(second.code, 0, second.stderr);
  t.regex(second.stderr, new RegExp(`publishing first ${held} results an earlier run left in`));
  const inLoad = await readStream<LoadResult>(nats.url, "LOAD");
  const r1 = readFileSync(out, "utf8").trim().split("\n").map((l) => (JSON.parse(l) as LoadResult).msgId);
  t.is(r1.length, 80);
  t.deepEqual(inLoad.filter((m) => m.value.runId === "r1").map((m) => m.msgId), r1, "run 1: each once, in the order produced");
  t.is(inLoad.filter((m) => m.value.runId === "r2").length, 40);
  const lastR1 = inLoad.map((m) => m.value.runId).lastIndexOf("r1");
  const firstR2 = inLoad.map((m) => m.value.runId).indexOf("r2");
  t.true(lastR1 < firstR2, "what run 1 left went out before run 2's results");
  t.false(readdirSync(spool).some((f) => f.endsWith(".seg")), "nothing left on disk");
});

test("load outbox - a coordinated run through a 12 s NATS outage: the worker's results wait in its outbox, nobody is declared lost, none is missing", async (t) => {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const server = await startEchoServer({ tokensPerChunk: 1 << 20 });
  t.teardown(() => server.stop());
  const conns = await Promise.all([0, 1].map(() => connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 })));
  t.teardown(() => Promise.all(conns.map((c) => (c.isClosed() ? undefined : c.close()))).then(() => {}));
  const logs: string[] = [];
  const outbox = openResultsOutbox(conns[1]!, { dir: tempDir(t, "load-outbox-worker-"), publishTimeoutMs: 1000 });
  const worker = startWorker({ nc: conns[1]!, id: "w1", helloMs: 50, outbox, log: (l) => logs.push(l) });
  t.teardown(() => worker.stop());
  const p = runCoordinated({ nc: conns[0]!, workers: 1, startDelayMs: 200, lostAfterMs: 3000, log: (l) => logs.push(l), job: { runId: "cout", source: { kind: "synthetic", cls: "short", rate: 20, durationS: 14, arrival: "constant" }, targets: [server.url], heartbeatMs: 250 } });
  await until(() => server.received.length >= 20, 10_000, "the first requests");
  await nats.stop();
  await pause(12_000); // the outage must last: well past the publish timeout and the coordinator's 3 s lostAfterMs
  await nats.start();
  const r = await p;
  t.log(logs.filter((l) => !/results wait for NATS/.test(l)));
  t.is(r.expected, 280);
  t.deepEqual(r.workers.map((w) => [w.id, w.status, w.results, w.received]), [["w1", "done", 280, 280]]);
  t.is(r.missing, 0);
  t.is(r.duplicates, 0);
  const inLoad = await readStream<LoadResult>(nats.url, "LOAD");
  t.is(new Set(inLoad.map((m) => m.msgId)).size, 280);
  t.is(inLoad.length, 280);
});
