import { randomUUID } from "node:crypto";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { decode, describeIssues, encode } from "../../shared/codec.ts";
import { errorMessage } from "../../shared/errors.ts";
import { createLifecycle } from "../../shared/lifecycle.ts";
import { assignReply, control, job as jobSchema, type Job, type WorkerDone } from "./control.ts";
import { watchConnection } from "./connection-watch.ts";
import { openResultsOutbox, type ResultsOutbox } from "./results-outbox.ts";
import { runLoad } from "./runner.ts";
import { workloadOf } from "./source-spec.ts";

/**
 * A load worker: announces itself while idle, takes one job at a time from a coordinator, sends
 * its share of the run (index ≡ shard.index mod shard.count) from the shared start time, publishes
 * each result to LOAD through its outbox (a NATS outage delays results, it does not lose them),
 * heartbeats with its progress, and reports `done` with its counts once its results are in LOAD
 * (or `drainTimeoutMs` passed: then `held` says how many still wait in its outbox).
 */
export interface LoadWorker {
  readonly id: string;
  /** Resolves when the worker has stopped. */
  closed(): Promise<void>;
  /**
   * Stops taking jobs, aborts a running one (its results so far are published, for up to the drain
   * timeout), idempotent. Past `graceMs` (default: the drain timeout and STOP_MARGIN_MS) it stops
   * waiting for the job: what its outbox still holds stays there.
   */
  stop(graceMs?: number): Promise<void>;
}

export interface WorkerOptions {
  nc: NatsConnection;
  id: string;
  helloMs?: number;
  /** Stop after one job (the CLI's default); otherwise serve jobs until stopped. */
  once?: boolean;
  log?: (line: string) => void;
  /** Where results wait for NATS (the CLI's has a spool dir); default: one in memory, closed at stop. */
  outbox?: ResultsOutbox;
  /** After a job, how long to wait for its results to be in LOAD before reporting done (default 60 s). */
  drainTimeoutMs?: number;
}

export const DEFAULT_DRAIN_TIMEOUT_MS = 60_000;
/** A stopped job's end beyond its outbox's drain: its last heartbeat, `done`, a flush. */
export const STOP_MARGIN_MS = 10_000;

export function startWorker(o: WorkerOptions): LoadWorker {
  const log = o.log ?? (() => {});
  let busy = false;
  let finished!: () => void;
  const closedP = new Promise<void>((r) => (finished = r));
  let running: Promise<void> | undefined;
  const instance = randomUUID();
  const outbox = o.outbox ?? openResultsOutbox(o.nc);
  const drainTimeoutMs = o.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
  // Stopping: no more jobs; the running one is aborted and ends as any job does (its results
  // drained to LOAD, `done` reported). Forced: it is left behind, its results in the outbox.
  const life = createLifecycle({
    graceMs: drainTimeoutMs + STOP_MARGIN_MS,
    graceful: async () => {
      clearInterval(helloTimer);
      sub.unsubscribe();
      await running;
      if (!o.outbox) await outbox.close();
    },
    force: async (graceMs) => {
      log(`worker ${o.id}: its job did not end within ${graceMs} ms of the stop; ${outbox.stats().queued} results left in the outbox`);
      if (!o.outbox) await outbox.close();
    },
  });

  const announce = () => {
    if (!busy && !life.signal.aborted && !o.nc.isClosed()) o.nc.publish(control.hello, encode({ worker: o.id, instance }));
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
      if (busy || life.signal.aborted) {
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
    life.signal.addEventListener("abort", onStop, { once: true });
    const abortSub = o.nc.subscribe(control.abort(j.runId), { callback: () => runAbort.abort() });
    const droppedBefore = outbox.stats().dropped;
    let sent = 0, completed = 0;
    const beat = () => {
      if (!o.nc.isClosed()) o.nc.publish(control.heartbeat(j.runId), encode({ worker: o.id, sent, completed, tMs: Date.now() }));
    };
    // The coordinator's heartbeat: without it for coordinatorLostAfterMs, this shard has nobody
    // counting it (the coordinator was killed), and sending on would be load nobody asked for.
    let coordinatorSeenMs = Date.now();
    const connection = watchConnection(o.nc, () => void (coordinatorSeenMs = Date.now()));
    const coordinatorSub = j.coordinatorLostAfterMs ? o.nc.subscribe(control.coordinator(j.runId), { callback: () => void (coordinatorSeenMs = Date.now()) }) : undefined;
    const hb = setInterval(() => {
      beat();
      if (j.coordinatorLostAfterMs && !connection.offline && Date.now() - coordinatorSeenMs > j.coordinatorLostAfterMs && !runAbort.signal.aborted) {
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
          outbox.publish(r);
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
      // Heartbeats go on meanwhile: the coordinator waits for a worker whose results wait for NATS.
      const drained = await outbox.drain(drainTimeoutMs, (left, waitedMs) => log(`worker ${o.id}: run ${j.runId}: ${left} results wait for NATS (${Math.round(waitedMs / 1000)} s)${outbox.stats().lastError ? `: ${outbox.stats().lastError}` : ""}`));
      if (!drained) log(`worker ${o.id}: run ${j.runId}: ${outbox.stats().queued} results still wait in the outbox${outbox.dir ? ` (${outbox.dir})` : ""}`);
      clearInterval(hb);
      connection.stop();
      coordinatorSub?.unsubscribe();
      abortSub.unsubscribe();
      life.signal.removeEventListener("abort", onStop);
    }
    const held = outbox.stats().queued;
    const done: WorkerDone = { worker: o.id, results: completed, publishFailed: outbox.stats().dropped - droppedBefore, ...(held > 0 ? { held } : {}), ...(error ? { error } : {}) };
    if (!o.nc.isClosed()) {
      beat();
      o.nc.publish(control.done(j.runId), encode(done));
      await o.nc.flush();
    }
    log(`worker ${o.id}: run ${j.runId} done, ${completed} results`);
  };

  const stop = async (graceMs?: number) => {
    await life.stop(graceMs);
    finished();
  };

  return { id: o.id, closed: () => closedP, stop };
}

function safeDecode(data: Uint8Array): unknown {
  try {
    return decode(data);
  } catch {
    return undefined;
  }
}
