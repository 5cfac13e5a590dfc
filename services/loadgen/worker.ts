import { randomUUID } from "node:crypto";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { decode, describeIssues, encode } from "../../shared/codec.ts";
import { errorMessage } from "../../shared/errors.ts";
import { assignReply, control, job as jobSchema, type Job, type WorkerDone } from "./control.ts";
import { createLoadPublisher } from "./publisher.ts";
import { runLoad } from "./runner.ts";
import { workloadOf } from "./source-spec.ts";

/**
 * A load worker: announces itself while idle, takes one job at a time from a coordinator, sends
 * its share of the run (index ≡ shard.index mod shard.count) from the shared start time, publishes
 * each result to LOAD, heartbeats with its progress, and reports `done` with its counts.
 */
export interface LoadWorker {
  readonly id: string;
  /** Resolves when the worker has stopped. */
  closed(): Promise<void>;
  /** Stops taking jobs, aborts a running one (its results so far are published), idempotent. */
  stop(): Promise<void>;
}

export interface WorkerOptions {
  nc: NatsConnection;
  id: string;
  helloMs?: number;
  /** Stop after one job (the CLI's default); otherwise serve jobs until stopped. */
  once?: boolean;
  log?: (line: string) => void;
}

export function startWorker(o: WorkerOptions): LoadWorker {
  const log = o.log ?? (() => {});
  const abort = new AbortController();
  let busy = false;
  let finished!: () => void;
  const closedP = new Promise<void>((r) => (finished = r));
  let running: Promise<void> | undefined;
  const instance = randomUUID();

  const announce = () => {
    if (!busy && !abort.signal.aborted && !o.nc.isClosed()) o.nc.publish(control.hello, encode({ worker: o.id, instance }));
  };
  const helloTimer = setInterval(announce, o.helloMs ?? 500);
  helloTimer.unref();
  announce();

  const sub: Subscription = o.nc.subscribe(control.assign(o.id), {
    callback: (err, msg) => {
      if (err) return;
      const parsed = jobSchema.safeParse(safeDecode(msg.data));
      if (!parsed.success) {
        msg.respond(encode(assignReply.parse({ ok: false, error: describeIssues(parsed.error) })));
        return;
      }
      // Meant for another process announcing the same id: no reply, that one answers.
      if (parsed.data.instance !== undefined && parsed.data.instance !== instance) return;
      if (busy || abort.signal.aborted) {
        msg.respond(encode({ ok: false, error: busy ? "worker is busy with another run" : "worker is stopping" }));
        return;
      }
      busy = true;
      msg.respond(encode({ ok: true }));
      running = runJob(parsed.data).finally(() => {
        busy = false;
        running = undefined;
        if (o.once) void stop();
        else announce();
      });
    },
  });

  const runJob = async (j: Job) => {
    log(`worker ${o.id}: run ${j.runId}, shard ${j.shard.index}/${j.shard.count}, start in ${Math.round(j.startAtMs - Date.now())} ms`);
    const runAbort = new AbortController();
    const onStop = () => runAbort.abort();
    abort.signal.addEventListener("abort", onStop, { once: true });
    const abortSub = o.nc.subscribe(control.abort(j.runId), { callback: () => runAbort.abort() });
    const publisher = createLoadPublisher(o.nc, { onError: (_r, err) => log(`worker ${o.id}: ${errorMessage(err)}`) });
    let sent = 0, completed = 0;
    const beat = () => {
      if (!o.nc.isClosed()) o.nc.publish(control.heartbeat(j.runId), encode({ worker: o.id, sent, completed, tMs: Date.now() }));
    };
    // The coordinator's heartbeat: without it for coordinatorLostAfterMs, this shard has nobody
    // counting it (the coordinator was killed), and sending on would be load nobody asked for.
    let coordinatorSeenMs = Date.now();
    const coordinatorSub = j.coordinatorLostAfterMs ? o.nc.subscribe(control.coordinator(j.runId), { callback: () => void (coordinatorSeenMs = Date.now()) }) : undefined;
    const hb = setInterval(() => {
      beat();
      if (j.coordinatorLostAfterMs && Date.now() - coordinatorSeenMs > j.coordinatorLostAfterMs && !runAbort.signal.aborted) {
        log(`worker ${o.id}: run ${j.runId}: no word from the coordinator for ${Math.round((Date.now() - coordinatorSeenMs) / 1000)} s: stopping`);
        runAbort.abort();
      }
    }, j.heartbeatMs);
    hb.unref();
    beat();
    let error: string | undefined;
    try {
      await runLoad({
        source: workloadOf(j.source, { onSkip: (e) => log(`worker ${o.id}: skipped ${e.message}`) }),
        onSent: () => void sent++,
        targets: j.targets,
        runId: j.runId,
        worker: o.id,
        shard: j.shard,
        startAtMs: j.startAtMs,
        signal: runAbort.signal,
        onResult: async (r) => {
          completed++;
          await publisher.publish(r);
        },
        ...(j.api ? { api: j.api } : {}),
        ...(j.model ? { model: j.model } : {}),
        ...(j.timeoutMs ? { timeoutMs: j.timeoutMs } : {}),
        ...(j.concurrency ? { concurrency: j.concurrency } : {}),
        ...(j.closedLoop ? { closedLoop: j.closedLoop } : {}),
        ...(j.headers ? { headers: j.headers } : {}),
        ...(j.promptMode ? { promptMode: j.promptMode } : {}),
        ...(j.charsPerToken ? { charsPerToken: j.charsPerToken } : {}),
        ...(j.slo ? { slo: j.slo } : {}),
      });
    } catch (err) {
      error = errorMessage(err);
      log(`worker ${o.id}: run ${j.runId} failed: ${error}`);
    } finally {
      await publisher.flush();
      clearInterval(hb);
      coordinatorSub?.unsubscribe();
      abortSub.unsubscribe();
      abort.signal.removeEventListener("abort", onStop);
    }
    const done: WorkerDone = { worker: o.id, results: completed, publishFailed: publisher.stats().failed, ...(error ? { error } : {}) };
    if (!o.nc.isClosed()) {
      beat();
      o.nc.publish(control.done(j.runId), encode(done));
      await o.nc.flush();
    }
    log(`worker ${o.id}: run ${j.runId} done, ${completed} results`);
  };

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      abort.abort();
      clearInterval(helloTimer);
      sub.unsubscribe();
      await running;
      finished();
    })());

  return { id: o.id, closed: () => closedP, stop };
}

function safeDecode(data: Uint8Array): unknown {
  try {
    return decode(data);
  } catch {
    return undefined;
  }
}
