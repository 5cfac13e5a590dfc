import test from "ava";
import { TRACES_DIR } from "./helpers/traces.ts";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { startTestNats } from "./helpers/nats-server.ts";
import { runCoordinated } from "../services/loadgen/coordinator.ts";
import { startWorker } from "../services/loadgen/worker.ts";
import { openResultsOutbox } from "../services/loadgen/results-outbox.ts";
import { loadCluster } from "./helpers/load-cluster.ts";
import { ensureStreams } from "../shared/streams.ts";
import { decodeAs } from "../shared/codec.ts";
import { loadResult, type LoadResult } from "../shared/messages/load.ts";
import { subjects } from "../shared/subjects.ts";

const AZURE = `${TRACES_DIR}/azure/AzureLLMInferenceTrace_code.csv`;

test("loadgen - a run split over two workers counts every request exactly once", async (t) => {
  const { server, conns } = await loadCluster(t, 3);
  const workers = [startWorker({ nc: conns[1]!, id: "wa", helloMs: 50 }), startWorker({ nc: conns[2]!, id: "wb", helloMs: 50 })];
  t.teardown(() => Promise.all(workers.map((w) => w.stop())).then(() => {}));

  const result = await runCoordinated({
    nc: conns[0]!,
    workers: 2,
    startDelayMs: 300,
    job: { runId: "split", source: { kind: "trace", path: AZURE, limit: 600, speedup: 200 }, targets: [server.url] },
  });
  t.is(result.expected, 600);
  t.is(result.received, 600);
  t.is(result.missing, 0);
  t.is(result.summary.requests, 600, "the combined summary holds each request once");
  t.deepEqual(result.workers.map((w) => [w.id, w.shard, w.status, w.results, w.received]), [["wa", 0, "done", 300, 300], ["wb", 1, "done", 300, 300]]);
  t.is(server.received.length, 600);
  t.is(new Set(server.received.map((r) => r.requestId)).size, 600);
  // Same schedule on both workers: sends by index follow one clock.
  const byId = new Map(server.received.map((r) => [r.requestId!, r.atMs]));
  t.true(byId.get("split-1")! >= byId.get("split-0")! - 50);
});

test("loadgen - a worker that dies mid-run is reported lost and the run still completes", async (t) => {
  const { server, conns } = await loadCluster(t, 3);
  const survivor = startWorker({ nc: conns[1]!, id: "w1", helloMs: 50 });
  t.teardown(() => survivor.stop());
  const doomed = conns[2]!;
  startWorker({ nc: doomed, id: "w2", helloMs: 50 });
  // The doomed worker's connection drops (as a crash would) once requests are flowing.
  const sub = conns[0]!.subscribe(subjects.load("lost"));
  void (async () => {
    for await (const _ of sub) {
      await doomed.close();
      break;
    }
  })();
  const logs: string[] = [];
  const result = await runCoordinated({
    nc: conns[0]!,
    workers: 2,
    startDelayMs: 300,
    lostAfterMs: 600,
    log: (l) => logs.push(l),
    job: { runId: "lost", source: { kind: "synthetic", cls: "short", rate: 100, durationS: 3, arrival: "constant" }, targets: [server.url], heartbeatMs: 100 },
  });
  sub.unsubscribe();
  const w2 = result.workers.find((w) => w.id === "w2")!;
  t.is(w2.status, "lost");
  t.true(logs.some((l) => /worker w2 lost/.test(l)));
  t.is(result.workers.find((w) => w.id === "w1")!.status, "done");
  t.is(result.expected, 300);
  t.true(result.missing > 0 && result.received + result.missing === 300, `received ${result.received}, missing ${result.missing}`);
});

test("loadgen - a re-published result is dropped by its Nats-Msg-Id and LOAD holds it once", async (t) => {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  await ensureStreams(await jetstreamManager(nc), ["LOAD"]);
  const pub = openResultsOutbox(nc);
  const r: LoadResult = { v: 1, kind: "load", msgId: "dup.0", runId: "dup", worker: "w0", requestId: "dup-0", index: 0, target: "http://x", scheduledMs: 1, sentMs: 2, requestedPromptTokens: 1, requestedOutputTokens: 1, promptTokens: 1, outputTokens: 1, status: "ok" };
  pub.publish(r);
  pub.publish(r);
  t.true(await pub.drain(5000));
  const s = pub.stats();
  t.deepEqual([s.published, s.duplicates, s.dropped, s.queued], [2, 1, 0, 0]);
  t.deepEqual(await pub.close(), { held: 0 });
  const info = await (await jetstreamManager(nc)).streams.info("LOAD");
  t.is(info.state.messages, 1);
  const m = await (await jetstreamManager(nc)).streams.getMessage("LOAD", { last_by_subj: subjects.load("dup") });
  const d = decodeAs(loadResult, m!.data);
  t.true(d.ok && d.value.msgId === "dup.0" && m!.header?.get("Nats-Msg-Id") === "dup.0");
});
