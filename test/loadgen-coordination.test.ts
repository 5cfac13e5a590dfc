import test from "ava";
import { TRACES_DIR } from "./helpers/traces.ts";
import { connect } from "@nats-io/transport-node";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { readStream, startTestNats } from "./helpers/nats-server.ts";
import { runLoad } from "../services/loadgen/mod.ts";
import type { LoadResult } from "../shared/messages/load.ts";
import { runCoordinated } from "../services/loadgen/coordinator.ts";
import { startWorker } from "../services/loadgen/worker.ts";
import { startEchoServer } from "./helpers/echo-server.ts";
import { loadCluster } from "./helpers/load-cluster.ts";
import { encode } from "../shared/codec.ts";
import { withTimeout } from "../shared/lifecycle.ts";
import { control } from "../services/loadgen/control.ts";
import { pause, until } from "./helpers/until.ts";

/** The coordinator and its workers over a real nats-server when things go wrong (found by an adversarial review). */
const AZURE = `${TRACES_DIR}/azure/AzureLLMInferenceTrace_code.csv`;

test.serial("coordination - a run id that already has results in LOAD is refused, not reported from the old run's results", async (t) => {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const okServer = await startEchoServer({ tokensPerChunk: 1 << 20 });
  const badServer = await startEchoServer({ failStatus: 500 });
  t.teardown(() => okServer.stop());
  t.teardown(() => badServer.stop());
  const conns = await Promise.all([0, 1].map(() => connect({ servers: nats.url })));
  t.teardown(() => Promise.all(conns.map((c) => c.close())).then(() => {}));
  const w = startWorker({ nc: conns[1]!, id: "wa", helloMs: 50 });
  t.teardown(() => w.stop());
  const job = { runId: "same", source: { kind: "trace" as const, path: AZURE, limit: 50, speedup: 500 } };
  const r1 = await runCoordinated({ nc: conns[0]!, workers: 1, startDelayMs: 200, job: { ...job, targets: [okServer.url] } });
  t.is(r1.summary.ok, 50);
  // Before the fix the second run reported the first run's 50 ok results (all its own failed with 500).
  await t.throwsAsync(runCoordinated({ nc: conns[0]!, workers: 1, startDelayMs: 200, joinTimeoutMs: 2000, job: { ...job, targets: [badServer.url] } }), { message: /already has results/ });
});

test.serial("coordination - a coordinator that fails after assigning (a worker refused) tells the workers it assigned to stop", async (t) => {
  const { server, conns } = await loadCluster(t, 3);
  const wa = startWorker({ nc: conns[1]!, id: "wa", helloMs: 50 });
  t.teardown(() => wa.stop());
  // wb: announces, then refuses (as a worker that another coordinator grabbed does)
  const hb = setInterval(() => conns[2]!.publish(control.hello, encode({ worker: "wb" })), 50);
  t.teardown(() => clearInterval(hb));
  conns[2]!.subscribe(control.assign("wb"), { callback: (_e, m) => void m.respond(encode({ ok: false, error: "worker is busy with another run" })) });
  const err = await t.throwsAsync(runCoordinated({ nc: conns[0]!, workers: 2, startDelayMs: 200, job: { runId: "orph", source: { kind: "synthetic", cls: "short", rate: 50, durationS: 3, arrival: "constant" }, targets: [server.url] } }));
  t.log("coordinator failed:", err?.message, "server had", server.received.length);
  await pause(3500); // nothing to wait for: long enough for the orphaned run (+200 ms, 3 s) to have sent, had it started
  t.log("after 3.5 s the server got", server.received.length, "requests from the orphan");
  t.is(server.received.length, 0);
});

test.serial("coordination - two processes announcing one worker id are refused, not both sending the shard", async (t) => {
  const { server, conns } = await loadCluster(t, 3);
  const ws = [startWorker({ nc: conns[1]!, id: "same", helloMs: 50 }), startWorker({ nc: conns[2]!, id: "same", helloMs: 50 })];
  t.teardown(() => Promise.all(ws.map((w) => w.stop())).then(() => {}));
  const r = await runCoordinated({ nc: conns[0]!, workers: 1, startDelayMs: 200, job: { runId: "dupid", source: { kind: "trace", path: AZURE, limit: 100, speedup: 500 }, targets: [server.url] } });
  t.log("expected", r.expected, "received", r.received, "dups", r.duplicates, "server got", server.received.length, "distinct", new Set(server.received.map((x) => x.requestId)).size);
  t.is(server.received.length, 100);
});

test.serial("coordination - more workers than rows: every row once, none missing", async (t) => {
  const { server, conns } = await loadCluster(t, 5);
  const ws = [1, 2, 3, 4].map((i) => startWorker({ nc: conns[i]!, id: `w${i}`, helloMs: 50 }));
  t.teardown(() => Promise.all(ws.map((w) => w.stop())).then(() => {}));
  const r = await runCoordinated({ nc: conns[0]!, workers: 4, startDelayMs: 200, job: { runId: "few", source: { kind: "trace", path: AZURE, limit: 2, speedup: 500 }, targets: [server.url] } });
  t.log(r.expected, r.received, r.missing, r.workers);
  t.is(r.received, 2);
});

test.serial("coordination - a signal already aborted stops the run before it starts", async (t) => {
  const { server, conns } = await loadCluster(t, 2);
  const w = startWorker({ nc: conns[1]!, id: "wa", helloMs: 50 });
  t.teardown(() => w.stop());
  const ac = new AbortController();
  ac.abort();
  const t0 = Date.now();
  const r = await runCoordinated({ nc: conns[0]!, workers: 1, startDelayMs: 200, signal: ac.signal, job: { runId: "abrt", source: { kind: "synthetic", cls: "short", rate: 50, durationS: 3, arrival: "constant" }, targets: [server.url] } }).catch((e) => e);
  t.log("took", Date.now() - t0, "ms; server got", server.received.length, r?.received ?? r?.message);
  t.is(server.received.length, 0);
});


test.serial("load - a stream the server cuts short is an error, not ok", async (t) => {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(`data: ${JSON.stringify({ choices: [{ text: "a" }] })}\n\n`);
      // Two tokens a little apart, then the server crashes mid-stream.
      void pause(20).then(() => res.write(`data: ${JSON.stringify({ choices: [{ text: "b" }] })}\n\n`));
      void pause(50).then(() => res.socket?.destroy());
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => server.close());
  const results: LoadResult[] = [];
  async function* src() { yield { index: 0, offsetMs: 0, promptTokens: 5, outputTokens: 4 }; }
  await runLoad({ source: src(), targets: [`http://127.0.0.1:${(server.address() as AddressInfo).port}`], runId: "trunc", onResult: (r) => void results.push(r) });
  t.log(results[0]!.status, results[0]!.error, results[0]!.outputTokens);
  t.not(results[0]!.status, "ok");
});

test.serial("coordination - workers stop when their coordinator falls silent (killed mid-run)", async (t) => {
  const { server, conns } = await loadCluster(t, 2);
  const logs: string[] = [];
  const w = startWorker({ nc: conns[1]!, id: "wa", helloMs: 50, log: (l) => logs.push(l) });
  t.teardown(() => w.stop());
  // 50 req/s for 10 s; the coordinator's connection dies after ~1 s (as if it were killed: no abort sent).
  const p = runCoordinated({ nc: conns[0]!, workers: 1, startDelayMs: 200, lostAfterMs: 600, job: { runId: "cdie", source: { kind: "synthetic", cls: "short", rate: 50, durationS: 10, arrival: "constant" }, targets: [server.url], heartbeatMs: 100 } }).catch((e) => e);
  await until(() => server.received.length >= 25, 10_000, "the run under way");
  const atDeath = server.received.length;
  await conns[0]!.close();
  await p;
  // The worker gives up after 1.2 s of silence (2 × lostAfterMs), then ends its run.
  await until(() => logs.some((l) => /no word from the coordinator/.test(l)) && logs.some((l) => /run cdie (done|failed)/.test(l)), 10_000, "the worker to give up and end its run");
  const after = server.received.length;
  await pause(1000); // nothing to wait for: time in which a worker that had not stopped would send ~50 more
  t.is(server.received.length, after, "the worker has stopped");
  t.true(after - atDeath < 150, `${after - atDeath} requests after the coordinator died (of ~440 left in the shard)`);
});

test.serial("coordination - a NATS restart mid-run loses no result from the count", async (t) => {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const server = await startEchoServer({ tokensPerChunk: 1 << 20 });
  t.teardown(() => server.stop());
  const logs: string[] = [];
  const conns = await Promise.all([0, 1, 2].map(() => connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 })));
  t.teardown(() => Promise.all(conns.map((c) => (c.isClosed() ? undefined : c.close()))).then(() => {}));
  const ws = [startWorker({ nc: conns[1]!, id: "wa", helloMs: 50, log: (l) => logs.push(l) }), startWorker({ nc: conns[2]!, id: "wb", helloMs: 50, log: (l) => logs.push(l) })];
  t.teardown(() => Promise.all(ws.map((w) => w.stop())).then(() => {}));
  const p = runCoordinated({ nc: conns[0]!, workers: 2, startDelayMs: 200, log: (l) => logs.push(l), job: { runId: "nrst", source: { kind: "synthetic", cls: "short", rate: 50, durationS: 4, arrival: "constant" }, targets: [server.url] } });
  await until(() => server.received.length >= 50, 10_000, "the run under way");
  await nats.stop();
  await pause(1000); // the outage
  await nats.start();
  // A deadline, not a wait: HUNG after 40 s (withTimeout's timer is unref'd: it does not hold the worker after the run).
  const r = await withTimeout(p, 40_000, "the coordinated run").catch(() => undefined);
  t.log(logs);
  t.log("server got", server.received.length, r ? { expected: r.expected, received: r.received, missing: r.missing, dups: r.duplicates, workers: r.workers } : "HUNG");
  const inStream = await readStream<LoadResult>(nats.url, "LOAD");
  t.log("LOAD holds", inStream.length, "distinct", new Set(inStream.map((m) => m.value.index)).size);
  t.is(r?.received, server.received.length);
});

test.serial("load - an onResult that throws rejects runLoad after the requests in flight, instead of killing the process", async (t) => {
  const server = await startEchoServer();
  t.teardown(() => server.stop());
  async function* src() { for (let i = 0; i < 5; i++) yield { index: i, offsetMs: i * 50, promptTokens: 5, outputTokens: 2 }; }
  await t.throwsAsync(runLoad({ source: src(), targets: [server.url], runId: "thr", onResult: async () => { throw new Error("sink broke"); } }), { message: "sink broke" });
  t.true(server.received.length < 5, "the run stops at the first failed result");
});
