import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import { ensureStreams, mjToJ, subjects, systemClock, type Clock, type RequestBatch, type RequestEvent } from "../../shared/mod.ts";
import type { WorkloadClass } from "../../shared/workload-classes.ts";
import { createGroundTruth, type ExpectedRequest, type GroundTruth, type NodeTruth } from "./ground-truth.ts";
import { createNodeModel, DEFAULT_GPUS, DEFAULT_RATE_PER_INSTANCE_S, DEFAULT_TP, type NodeModel, type NodeWindow } from "./node-model.ts";
import { createPublishPipe, type Outgoing, type PublishPipe, type PublishStats } from "./publish-pipe.ts";

/**
 * The fleet emulator: N emulated nodes (see node-model.ts) publishing what their agents would —
 * POWER per node and window, WORK per instance and window, REQUESTS lifecycle events — straight to
 * JetStream, with the agents' message ids. It measures the analyzer at fleet scale without HTTP,
 * simulated engines or sampler timers, and it knows the truth the analyzer must find.
 *
 * Real time: windows lie on the wall clock's grid (from the next boundary); request events are
 * published as their time passes (per sample tick), POWER and WORK when their window closes.
 * Fast: synthetic timestamps from `startMs`, published as fast as JetStream acknowledges.
 *
 * The run lasts `durationS` windows' worth of time; arrivals continue to the end and the requests
 * still in flight in the last window end there as "aborted", so every request that started also
 * finished and the analyzer can emit all of them.
 */
export interface FleetOptions {
  nc: NatsConnection;
  nodes?: number;
  gpusPerNode?: number;
  tp?: number;
  durationS: number;
  realTime?: boolean;
  ratePerInstanceS?: number;
  seed?: number;
  /** Node ids are `<prefix>-<index, 4 digits>`. */
  nodePrefix?: string;
  /** Fast mode: the first window's start, epoch ms (rounded down to the window grid). */
  startMs?: number;
  sampleMs?: number;
  windowMs?: number;
  prefillWeight?: number;
  classes?: readonly WorkloadClass[];
  runId?: string;
  maxInFlight?: number;
  /**
   * Publish request events as the agent does (default): one REQUESTS batch per node and sample tick
   * (real time) or window (fast). `false`: one message per event, as a third-party publisher may.
   */
  batchRequests?: boolean;
  /**
   * Fast mode: one REQUESTS batch per node and sample tick, as an agent publishes in real time (10
   * per window), instead of one per window. A recorded backlog then has the message count of a real
   * fleet's, not a third of it.
   */
  tickBatches?: boolean;
  /** Replicas of the streams if it creates them; default: the server's (resolveReplicas). */
  replicas?: number;
  /** Where a stream left short of its replicas is reported. */
  log?: (line: string) => void;
  clock?: Clock;
  /** Called after a window's POWER and WORK of every node were handed to the publisher. */
  onWindow?(w: { windowStartMs: number; windowEndMs: number; wallMs: number }): void;
}

export interface FleetReport {
  nodes: number;
  gpus: number;
  instances: number;
  realTime: boolean;
  startMs: number;
  endMs: number;
  wallS: number;
  /** Windows per node. */
  windowsPerNode: number;
  published: { power: number; work: number; requests: number; total: number; duplicates: number; bytes: number; retries: number; failed: number };
  requests: { started: number; finished: number; ok: number; aborted: number };
  truth: {
    nodeWindows: number;
    measuredJ: number;
    attributedJ: number;
    idleJ: number;
    counterJ: number;
    perNodeJ: Record<string, number>;
  };
  /** Real time: how far behind its schedule the publisher fell at worst, ms. */
  maxLagMs: number;
}

export interface FleetEmulator {
  /** Resolves with the report when the run ended (or was stopped). */
  done(): Promise<FleetReport>;
  /** Ends the run at the current window (in-flight requests aborted there). Idempotent. */
  stop(): Promise<FleetReport>;
  /** Per-request truth, keyed `<node>/<requestId>`. */
  expectedRequests(): Map<string, ExpectedRequest>;
  expectedNodes(): Map<string, NodeTruth>;
  publishStats(): PublishStats;
}

/** Most events in one emulated REQUESTS batch (well under the server's max payload). */
export const FLEET_BATCH_EVENTS = 512;
export const FAST_START_MS = Date.UTC(2025, 0, 1);
export const DEFAULT_NODE_PREFIX = "fleet";

export function nodeIds(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-${String(i).padStart(4, "0")}`);
}

export function startFleet(opts: FleetOptions): FleetEmulator {
  const windowMs = opts.windowMs ?? 1000;
  const sampleMs = opts.sampleMs ?? 100;
  const clock = opts.clock ?? systemClock();
  const realTime = opts.realTime ?? false;
  const windows = Math.max(1, Math.round((opts.durationS * 1000) / windowMs));
  const models: NodeModel[] = nodeIds(opts.nodePrefix ?? DEFAULT_NODE_PREFIX, opts.nodes ?? 1).map((node) =>
    createNodeModel({
      node,
      gpus: opts.gpusPerNode ?? DEFAULT_GPUS,
      tp: opts.tp ?? DEFAULT_TP,
      ratePerInstanceS: opts.ratePerInstanceS ?? DEFAULT_RATE_PER_INSTANCE_S,
      seed: opts.seed ?? 1,
      sampleMs,
      windowMs,
      ...(opts.classes ? { classes: opts.classes } : {}),
      ...(opts.runId ? { runId: opts.runId } : {}),
    }),
  );
  const truth: GroundTruth = createGroundTruth(opts.prefillWeight !== undefined ? { prefillWeight: opts.prefillWeight } : {});
  const pipe: PublishPipe = createPublishPipe(opts.nc, opts.maxInFlight !== undefined ? { maxInFlight: opts.maxInFlight } : {});
  const counts = { ok: 0, aborted: 0 };
  let stopRequested = false;
  let maxLagMs = 0;
  let startMs = 0;
  let endMs = 0;
  const wall0 = performance.now();

  const sleepUntil = async (epochMs: number) => {
    // setTimeout rounds down to whole ms: loop until the clock has really passed the instant.
    for (let d = epochMs - clock.nowMs(); d > 0; d = epochMs - clock.nowMs()) await new Promise((r) => setTimeout(r, Math.ceil(d)));
    maxLagMs = Math.max(maxLagMs, clock.nowMs() - epochMs);
  };
  const batchRequests = opts.batchRequests ?? true;
  /** Events in time order; `key` makes batch ids (deterministic: a re-run is all duplicates). */
  const publishEvents = (events: readonly RequestEvent[], key: number): Promise<void> => {
    const out: Outgoing[] = [];
    const byNode = new Map<string, RequestEvent[]>();
    for (const e of events) {
      if (e.event === "end") counts[e.status === "ok" ? "ok" : "aborted"]++;
      truth.addEvent(e);
      if (!batchRequests) out.push({ subject: subjects.requests(e.node), msg: e });
      else byNode.get(e.node)?.push(e) ?? byNode.set(e.node, [e]);
    }
    for (const [node, evs] of byNode) {
      for (let i = 0; i < evs.length; i += FLEET_BATCH_EVENTS) {
        const batch: RequestBatch = { v: 1, kind: "request_batch", msgId: `${node}:reqs:${key}:${i / FLEET_BATCH_EVENTS}`, node, events: evs.slice(i, i + FLEET_BATCH_EVENTS) };
        out.push({ subject: subjects.requests(node), msg: batch });
      }
    }
    return pipe.publishAll(out);
  };
  const publishClosed = (windows: NodeWindow[]): Promise<void> => {
    const out: Outgoing[] = [];
    for (const w of windows) {
      truth.addWindow(w.power, w.work);
      for (const work of w.work) out.push({ subject: subjects.work(w.power.node), msg: work });
      out.push({ subject: subjects.power(w.power.node), msg: w.power });
    }
    return pipe.publishAll(out);
  };

  const run = async (): Promise<FleetReport> => {
    await ensureStreams(await jetstreamManager(opts.nc), ["POWER", "WORK", "REQUESTS"], { ...(opts.replicas !== undefined ? { replicas: opts.replicas } : {}), ...(opts.log ? { log: opts.log } : {}) });
    let ws = realTime ? Math.ceil(clock.nowMs() / windowMs) * windowMs : Math.floor((opts.startMs ?? FAST_START_MS) / windowMs) * windowMs;
    startMs = ws;
    if (realTime) await sleepUntil(ws);
    for (let i = 0; i < windows; i++) {
      const last = i === windows - 1 || stopRequested;
      const out = models.map((m) => m.step(ws, { abortAll: last }));
      const we = ws + windowMs;
      if (realTime || opts.tickBatches) {
        const events = out.flatMap((o) => o.events).sort((a, b) => a.tMs - b.tMs);
        let k = 0;
        for (let t = ws + sampleMs; t <= we; t += sampleMs) {
          if (realTime) await sleepUntil(t);
          const from = k;
          while (k < events.length && events[k]!.tMs < t) k++;
          await publishEvents(events.slice(from, k), t);
        }
      } else {
        await publishEvents(out.flatMap((o) => o.events), ws);
      }
      await publishClosed(out);
      opts.onWindow?.({ windowStartMs: ws, windowEndMs: we, wallMs: clock.nowMs() });
      ws = we;
      endMs = we;
      if (last) break;
    }
    await pipe.flush();
    pipe.close();
    const err = pipe.error();
    if (err) throw new Error(`fleet: ${pipe.stats().failed} publishes failed: ${err.message}`, { cause: err });
    return report();
  };

  const report = (): FleetReport => {
    const t = truth.totals();
    const p = pipe.stats();
    const perNodeJ: Record<string, number> = {};
    for (const [node, n] of truth.nodes()) perNodeJ[node] = mjToJ(n.measuredMj);
    const gpusPerNode = opts.gpusPerNode ?? DEFAULT_GPUS;
    return {
      nodes: models.length,
      gpus: models.length * gpusPerNode,
      instances: models.reduce((s, m) => s + m.instances.length, 0),
      realTime,
      startMs,
      endMs,
      wallS: (performance.now() - wall0) / 1000,
      windowsPerNode: t.windows / Math.max(1, models.length),
      published: {
        power: p.bySubjectPrefix.power ?? 0,
        work: p.bySubjectPrefix.work ?? 0,
        requests: p.bySubjectPrefix.req ?? 0,
        total: p.published,
        duplicates: p.duplicates,
        bytes: p.bytes,
        retries: p.retries,
        failed: p.failed,
      },
      requests: { started: t.requestsStarted, finished: t.requestsFinished, ok: counts.ok, aborted: counts.aborted },
      truth: { nodeWindows: t.windows, measuredJ: mjToJ(t.measuredMj), attributedJ: mjToJ(t.attributedMj), idleJ: mjToJ(t.idleMj), counterJ: mjToJ(t.counterMj), perNodeJ },
      maxLagMs,
    };
  };

  const done = run();
  return {
    done: () => done,
    stop() {
      stopRequested = true;
      return done;
    },
    expectedRequests: () => truth.requests(),
    expectedNodes: () => truth.nodes(),
    publishStats: () => pipe.stats(),
  };
}
