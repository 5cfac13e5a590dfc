import { jetstream, jetstreamManager, DeliverPolicy } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { decode, decodeAs, encode } from "../../shared/codec.ts";
import { ConfigError, RetryableError, errorMessage } from "../../shared/errors.ts";
import { createLifecycle } from "../../shared/lifecycle.ts";
import { loadResult, type LoadResult } from "../../shared/messages/load.ts";
import { ensureStreams } from "../../shared/streams.ts";
import { subjects } from "../../shared/subjects.ts";
import { assignReply, control, heartbeat, hello, workerDone, type JobInput, type WorkerDone } from "./control.ts";
import { watchConnection, type ConnectionWatch } from "./connection-watch.ts";
import { countRequests } from "./source-spec.ts";
import { createAggregator, type LoadSummary } from "./summary.ts";

/**
 * Splits one run across N workers over NATS: waits for N idle workers, assigns shard k of N to the
 * k-th (sorted by id, so the split is deterministic), gives them one start time a little in the
 * future, watches their heartbeats (a worker silent for `lostAfterMs` is reported lost), and builds
 * the combined result from the LOAD stream itself, counting each request index once.
 */
export interface CoordinatorOptions {
  nc: NatsConnection;
  workers: number;
  job: Omit<JobInput, "shard" | "startAtMs">;
  /** Time between assignment and the common start, ms: enough for every worker to parse ahead. */
  startDelayMs?: number;
  joinTimeoutMs?: number;
  lostAfterMs?: number;
  /** After the last worker finished, how long to wait for its results to arrive from LOAD. */
  drainTimeoutMs?: number;
  onResult?: (r: LoadResult) => void;
  onProgress?: (p: { sent: number; completed: number; received: number }) => void;
  signal?: AbortSignal;
  log?: (line: string) => void;
  /** Replicas of LOAD if this run creates it; default: the server's (resolveReplicas). */
  replicas?: number;
  /** Requests in the workload, where the caller has counted them already (else counted here). */
  expected?: number;
}

/** The run's end: how long closing the LOAD reader may take before it is left behind. */
export const STOP_GRACE_MS = 5000;

export interface WorkerReport {
  id: string;
  shard: number;
  status: "done" | "lost" | "failed";
  /** Results the worker said it produced (done), or its last heartbeat's count (lost). */
  results: number;
  /** Results of this worker found in LOAD. */
  received: number;
  /** Results still in the worker's outbox when it reported done (NATS was unreachable for its drain timeout). */
  held?: number;
  error?: string;
}

export interface CombinedResult {
  runId: string;
  /** Requests in the workload. */
  expected: number;
  /** Distinct request indices found in LOAD. */
  received: number;
  /** Results seen more than once (redelivery) and not counted again. */
  duplicates: number;
  missing: number;
  workers: WorkerReport[];
  summary: LoadSummary;
}

export async function runCoordinated(o: CoordinatorOptions): Promise<CombinedResult> {
  const log = o.log ?? (() => {});
  const runId = o.job.runId;
  const lostAfterMs = o.lostAfterMs ?? 5000;
  const expectedP = o.expected !== undefined ? Promise.resolve(o.expected) : countRequests(o.job.source);
  expectedP.catch(() => {}); // awaited below; a bad trace fails the run there
  await assertNewRun(o.nc, runId, { ...(o.replicas !== undefined ? { replicas: o.replicas } : {}), log });

  // 1. The combined result comes from the stream: subscribe before anyone sends.
  const agg = createAggregator(runId, "all", o.job.slo);
  const seen = new Set<number>();
  const receivedBy = new Map<string, number>();
  let duplicates = 0;
  let arrived: (() => void) | undefined;
  const consumer = await jetstream(o.nc).consumers.get("LOAD", { filter_subjects: subjects.load(runId), deliver_policy: DeliverPolicy.All });
  // Short pulls: after a NATS restart the ordered consumer is recreated within one `expires` (its
  // default, 30 s, outlasted the drain wait and the results that were in LOAD were reported missing).
  const messages = await consumer.consume({ expires: 2000 });
  const reading = (async () => {
    for await (const m of messages) {
      const d = decodeAs(loadResult, m.data);
      if (!d.ok) {
        log(`coordinator: undecodable LOAD message skipped (${d.reason}: ${d.detail})`);
        continue;
      }
      const r = d.value;
      if (seen.has(r.index)) {
        duplicates++;
        continue;
      }
      seen.add(r.index);
      receivedBy.set(r.worker, (receivedBy.get(r.worker) ?? 0) + 1);
      agg.add(r);
      o.onResult?.(r);
      arrived?.();
    }
  })();

  const subs: Subscription[] = [];
  // Once a job went out, every way out of here tells the workers to stop: a coordinator that
  // failed (a refused assignment, an error) or gave up on a worker as lost leaves none sending.
  let assigned = false;
  let coordinatorBeat: NodeJS.Timeout | undefined;
  let watchdog: NodeJS.Timeout | undefined;
  let connection: ConnectionWatch | undefined;
  const abortRun = () => {
    if (!o.nc.isClosed()) o.nc.publish(control.abort(runId), encode({}));
  };
  // The run's end, however it ends: workers told to stop, subscriptions and the LOAD reader closed
  // (within the grace: a reader stuck on a dead connection is left behind, with a line in the log).
  const life = createLifecycle({
    graceMs: STOP_GRACE_MS,
    graceful: async () => {
      clearInterval(coordinatorBeat);
      clearInterval(watchdog);
      connection?.stop();
      if (assigned) abortRun();
      for (const s of subs) s.unsubscribe();
      await messages.close();
      await reading.catch((err) => log(`coordinator: LOAD reader ended: ${errorMessage(err)}`));
    },
    force: (graceMs) => log(`coordinator: the LOAD reader did not close within ${graceMs} ms; left behind`),
  });
  try {
    // 2. Gather N idle workers.
    const { ids, instances } = await gatherWorkers(o.nc, o.workers, o.joinTimeoutMs ?? 30_000, o.signal);
    if (o.signal?.aborted) throw new RetryableError("UNAVAILABLE", "aborted before the run started");
    log(`coordinator: workers ${ids.join(", ")}`);
    const state = new Map<string, { shard: number; lastMs: number; sent: number; completed: number; done?: WorkerDone; lost?: boolean }>();
    ids.forEach((id, k) => state.set(id, { shard: k, lastMs: Date.now(), sent: 0, completed: 0 }));
    let changed: (() => void) | undefined;
    const poke = () => {
      const c = changed;
      changed = undefined;
      c?.();
    };
    subs.push(
      o.nc.subscribe(control.heartbeat(runId), {
        callback: (_e, m) => {
          const h = heartbeat.safeParse(safeDecode(m.data));
          const s = h.success ? state.get(h.data.worker) : undefined;
          if (!h.success || !s) return;
          s.lastMs = Date.now();
          s.sent = h.data.sent;
          s.completed = h.data.completed;
          o.onProgress?.(totals());
        },
      }),
      o.nc.subscribe(control.done(runId), {
        callback: (_e, m) => {
          const d = workerDone.safeParse(safeDecode(m.data));
          const s = d.success ? state.get(d.data.worker) : undefined;
          if (!d.success || !s) return;
          s.done = d.data;
          poke();
        },
      }),
    );
    const totals = () => {
      let sent = 0, completed = 0;
      for (const s of state.values()) {
        sent += s.sent;
        completed += s.completed;
      }
      return { sent, completed, received: seen.size };
    };

    // 3. Assign shards with one common start.
    const startAtMs = Date.now() + (o.startDelayMs ?? 2000);
    o.signal?.addEventListener("abort", abortRun, { once: true });
    // Alive, for the workers: they stop when this falls silent (a coordinator killed mid-run).
    const heartbeatMs = o.job.heartbeatMs ?? 1000;
    const alive = () => {
      if (!o.nc.isClosed()) o.nc.publish(control.coordinator(runId), encode({ tMs: Date.now() }));
    };
    coordinatorBeat = setInterval(alive, heartbeatMs);
    coordinatorBeat.unref();
    alive();
    for (const [id, s] of state) {
      if (o.signal?.aborted) throw new RetryableError("UNAVAILABLE", "aborted while assigning the run");
      assigned = true;
      const reply = await o.nc.request(control.assign(id), encode({ ...o.job, ...(instances.get(id) ? { instance: instances.get(id) } : {}), shard: { index: s.shard, count: ids.length }, startAtMs, coordinatorLostAfterMs: Math.max(2 * lostAfterMs, 5 * heartbeatMs) }), { timeout: 5000 });
      const r = assignReply.safeParse(safeDecode(reply.data));
      if (!r.success || !r.data.ok) throw new RetryableError("UNAVAILABLE", `worker ${id} refused the job: ${r.success ? r.data.error : "bad reply"}`);
      s.lastMs = Date.now();
    }

    // 4. Watch until every worker is done or lost (judged only while connected: see watchConnection).
    connection = watchConnection(o.nc, () => {
      for (const s of state.values()) s.lastMs = Date.now();
    });
    watchdog = setInterval(() => {
      if (connection!.offline) return;
      for (const [id, s] of state) {
        if (!s.done && !s.lost && Date.now() - s.lastMs > lostAfterMs) {
          s.lost = true;
          log(`coordinator: worker ${id} lost (no heartbeat for ${lostAfterMs} ms); its unsent requests are missing`);
          poke();
        }
      }
    }, Math.min(1000, lostAfterMs / 4));
    watchdog.unref();
    while ([...state.values()].some((s) => !s.done && !s.lost)) await new Promise<void>((r) => (changed = r));
    clearInterval(watchdog);
    o.signal?.removeEventListener("abort", abortRun);

    // 5. Wait for the finished workers' results to come through LOAD.
    const want = () => [...state.entries()].every(([id, s]) => !s.done || (receivedBy.get(id) ?? 0) >= s.done.results - s.done.publishFailed);
    // Each result wakes the check; so does the end of the wait.
    let waited = false;
    const drainTimer = setTimeout(() => {
      waited = true;
      arrived?.();
    }, o.drainTimeoutMs ?? 10_000);
    drainTimer.unref();
    while (!want() && !waited) await new Promise<void>((r) => (arrived = r));
    arrived = undefined;
    clearTimeout(drainTimer);
    const expected = await expectedP;
    const workers: WorkerReport[] = [...state.entries()].map(([id, s]) => ({
      id,
      shard: s.shard,
      status: s.done ? (s.done.error ? "failed" : "done") : "lost",
      results: s.done ? s.done.results : s.completed,
      received: receivedBy.get(id) ?? 0,
      ...(s.done?.held ? { held: s.done.held } : {}),
      ...(s.done?.error ? { error: s.done.error } : {}),
    }));
    return { runId, expected, received: seen.size, duplicates, missing: Math.max(0, expected - seen.size), workers, summary: agg.summary() };
  } finally {
    await life.stop();
  }
}

/**
 * A run id that already has results in LOAD would be counted from the old run's results (read from
 * the start), and the new run's results dropped by the server as duplicates of their msgId.
 */
export async function assertNewRun(nc: NatsConnection, runId: string, opts: { replicas?: number; log?: (line: string) => void } = {}): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await ensureStreams(jsm, ["LOAD"], opts);
  const previous = await jsm.streams.getMessage("LOAD", { last_by_subj: subjects.load(runId) }).catch(() => null);
  if (previous) throw new ConfigError("--run-id", `run ${runId} already has results in LOAD: give the run a new id`);
}

async function gatherWorkers(nc: NatsConnection, n: number, timeoutMs: number, signal?: AbortSignal): Promise<{ ids: string[]; instances: Map<string, string> }> {
  const ids = new Set<string>();
  const instances = new Map<string, string>();
  const sub = nc.subscribe(control.hello);
  const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
  const onAbort = () => sub.unsubscribe();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const m of sub) {
      const h = hello.safeParse(safeDecode(m.data));
      if (!h.success) continue;
      const { worker, instance } = h.data;
      // Two processes announcing one id would both take (and send) that id's shard.
      if (instance !== undefined) {
        const known = instances.get(worker);
        if (known !== undefined && known !== instance) throw new ConfigError("--worker-id", `two workers announce the id ${worker}: give each its own --worker-id`);
        instances.set(worker, instance);
      }
      ids.add(worker);
      if (ids.size >= n) break;
    }
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    sub.unsubscribe();
  }
  if (ids.size < n) throw new RetryableError("TIMEOUT", `only ${ids.size} of ${n} workers announced themselves within ${timeoutMs} ms (${[...ids].join(", ") || "none"})`);
  return { ids: [...ids].sort(), instances };
}

function safeDecode(data: Uint8Array): unknown {
  try {
    return decode(data);
  } catch {
    return undefined;
  }
}
