import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { Service } from "@nats-io/services";
import { createAckedPublisher, ensureStreams, errorMessage, KV_NODES, openBucket, resolveReplicas, withTimeout, type CarbonSeries, type InfluxTarget } from "../../shared/mod.ts";
import { openCheckpointStore } from "./checkpoint.ts";
import type { InfluxSink } from "./influx-sink.ts";
import type { JoinStats } from "./join.ts";
import { startLoadIntake } from "./load-intake.ts";
import { openLoadJoin, type Slo } from "./load-join.ts";
import { startPartition, type Partition, type PartitionStats } from "./partition.ts";
import { startPartitionLeases } from "./partitions.ts";
import { createPointWriter } from "./point-writer.ts";
import { analyzerStatsPoint } from "./points.ts";
import { startQueryService } from "./query-service.ts";
import { retrying } from "./retry.ts";
import { ensureRollups, type RollupOptions } from "./rollups.ts";

/**
 * The analyzer service, wired from small stages (each in its own file): per partition, durable
 * consumers → intake (decode, schema, dead letters) → the windowed join → the store (InfluxDB
 * through a coalescing writer, ENERGY, the load join), with a checkpoint per partition that makes
 * a restart exact without per-request bookkeeping (partition.ts). LOAD has its own small intake.
 *
 * Scale-out: replicas of the same `name` share partitions through leases (partitions.ts). With
 * `partitions` > 1 (and the server's partition mapping) they split the fleet by node; with one
 * partition, one replica works and the others stand by to take over.
 */
export interface AnalyzerOptions {
  nc: NatsConnection;
  sink: InfluxSink;
  /** Durable consumer name prefix; replicas with the same name share the work. */
  name?: string;
  /** Number of node partitions the server maps subjects to (0: no partitioning). */
  partitions?: number;
  /**
   * Copies of every stream and KV bucket it creates (join checkpoints, load join, leases, nodes):
   * default the cluster's size capped at 3, 1 on a single server (resolveReplicas). Not to be
   * confused with analyzer replicas (processes sharing `name`).
   */
  replicas?: number;
  prefillWeight?: number;
  /** Attribute by the prefill-energy rule with this energy per prefill token, mJ (the instance's GPUs together; `joulestream calibrate`). */
  prefillMjPerToken?: number;
  /** JoinOptions.decodeStepCtxTokens: with prefillMjPerToken, decode energy split by cost (context), not count. */
  decodeStepCtxTokens?: number;
  /** JoinOptions.prefillCtx: a prefill token's cost grows with its position in the prompt. */
  prefillCtx?: { k: number; calibrationPosition: number };
  /** Static (idle) power of one GPU, W: a request's part of it is reported apart from its active energy. */
  staticPowerW?: number;
  allowedLatenessMs?: number;
  slo?: Slo;
  /**
   * Create InfluxDB 1.x retention policies and 1-min rollup continuous queries (rollups.ts) at start,
   * on `influx`. Makes `raw` the database's default retention policy.
   */
  rollups?: RollupOptions;
  /** Every 10 Hz sample as its own gpu_power point, instead of one per GPU and window. */
  rawSamples?: boolean;
  /** Grid carbon intensity: each request point gets gco2 (its energy at the intensity when it started). */
  carbon?: CarbonSeries;
  /** InfluxDB to answer the query API from (the same the sink writes). */
  influx?: InfluxTarget;
  /** How often the join is drained even without new messages. */
  tickMs?: number;
  checkpointIntervalMs?: number;
  /** How long stop() may take to store and checkpoint what it holds (then the rest is read again at the next start). */
  stopGraceMs?: number;
  statsIntervalMs?: number;
  clock?: () => number;
  log?: (line: string) => void;
}

export interface AnalyzerStats extends Omit<PartitionStats, "store" | "join"> {
  requestsEmitted: number;
  windowsClosed: number;
  loadJoined: number;
  partitions: number[];
  join: JoinStats;
}

export interface Analyzer {
  stats(): AnalyzerStats;
  /** Resolves once every message currently in the streams has been processed and acknowledged. */
  idle(timeoutMs?: number): Promise<boolean>;
  stop(): Promise<void>;
}

export const DEFAULT_STOP_GRACE_MS = 10_000;

export async function startAnalyzer(opts: AnalyzerOptions): Promise<Analyzer> {
  const log = opts.log ?? (() => {});
  const clock = opts.clock ?? Date.now;
  const name = opts.name ?? "analyzer";
  const replicaId = `${name}-${randomUUID().slice(0, 8)}`;
  const replicas = resolveReplicas(opts.nc, opts.replicas, { log });
  const jsm = await jetstreamManager(opts.nc);
  // AUDIT and the nodes' inventory bucket too: agents run as node identities that may write to them
  // but not create them (infra/nats/auth.ts), so the operator's side does.
  await ensureStreams(jsm, ["POWER", "WORK", "REQUESTS", "LOAD", "ENERGY", "DEADLETTER", "AUDIT"], { replicas, log });
  await openBucket(opts.nc, KV_NODES, { history: 1 }, { replicas, log });
  const js = jetstream(opts.nc);
  if (opts.rollups && opts.influx) await ensureRollups(opts.influx, opts.rollups);
  const publisher = createAckedPublisher(opts.nc);
  const loadJoin = await openLoadJoin(opts.nc, name, opts.slo ?? {}, { replicas, log });
  const checkpoints = await openCheckpointStore(opts.nc, name, { replicas, log });
  const grace = opts.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  const count = Math.max(1, opts.partitions ?? 0);
  const live = new Map<number, Partition>();
  const retired: PartitionStats[] = []; // stats of partitions let go, so counters do not go back
  /** When the analyzer's stop must be done by (set by stop()): every partition stops within it. */
  let stopAt: number | undefined;
  const loadRetry = retrying({ log });
  const loadWriter = createPointWriter(opts.sink, { log });
  const load = await startLoadIntake({ name, nc: opts.nc, jsm, js, loadJoin, writer: loadWriter, retry: loadRetry, log, clock });

  const leases = await startPartitionLeases({
    nc: opts.nc,
    group: name,
    replicaId,
    partitions: count,
    replicas,
    log,
    onAcquire: async (p) => {
      const join = {
        ...(opts.prefillWeight !== undefined ? { prefillWeight: opts.prefillWeight } : {}),
        ...(opts.prefillMjPerToken !== undefined ? { prefillMjPerToken: opts.prefillMjPerToken } : {}),
        ...(opts.decodeStepCtxTokens !== undefined ? { decodeStepCtxTokens: opts.decodeStepCtxTokens } : {}),
        ...(opts.prefillCtx ? { prefillCtx: opts.prefillCtx } : {}),
        ...(opts.staticPowerW !== undefined ? { staticPowerW: opts.staticPowerW } : {}),
        ...(opts.allowedLatenessMs !== undefined ? { allowedLatenessMs: opts.allowedLatenessMs } : {}),
      };
      const part = await startPartition({ partition: p, filtered: count > 1, name, nc: opts.nc, jsm, js, publisher, sink: opts.sink, checkpoints, loadJoin, join, rawSamples: opts.rawSamples ?? false, ...(opts.carbon ? { carbon: opts.carbon } : {}), clock, log, ...(opts.tickMs ? { tickMs: opts.tickMs } : {}), ...(opts.checkpointIntervalMs ? { checkpointIntervalMs: opts.checkpointIntervalMs } : {}) });
      live.set(p, part);
    },
    onRelease: async (p) => {
      const part = live.get(p);
      live.delete(p);
      if (!part) return;
      // Stopping the analyzer: every partition within what is left of one grace, not one grace each.
      await part.stop(stopAt === undefined ? grace : Math.max(0, stopAt - Date.now()));
      retired.push(part.stats());
    },
  });
  const query: Service | undefined = opts.influx ? await startQueryService(opts.nc, opts.influx) : undefined;

  const stats = (): AnalyzerStats => {
    const all = [...retired, ...[...live.values()].map((p) => p.stats())];
    const sum = (f: (s: PartitionStats) => number) => all.reduce((n, s) => n + f(s), 0);
    const l = load.stats();

    return {
      received: { POWER: sum((s) => s.received.POWER), WORK: sum((s) => s.received.WORK), REQUESTS: sum((s) => s.received.REQUESTS), LOAD: l.received } as AnalyzerStats["received"],
      deadLettered: sum((s) => s.deadLettered) + l.deadLettered,
      acked: sum((s) => s.acked),
      reacked: sum((s) => s.reacked),
      sinkRetries: sum((s) => s.sinkRetries) + loadWriter.stats().retries,
      pointsRejected: sum((s) => s.pointsRejected) + loadWriter.stats().rejected,
      checkpoints: sum((s) => s.checkpoints),
      checkpointBytes: sum((s) => s.checkpointBytes),
      consumersRecreated: sum((s) => s.consumersRecreated),
      pacing: { holds: sum((s) => s.pacing.holds), longestHoldMs: Math.max(0, ...all.map((s) => s.pacing.longestHoldMs)) },
      requestsEmitted: sum((s) => s.store.requestsEmitted),
      windowsClosed: sum((s) => s.store.windowsClosed),
      loadJoined: sum((s) => s.store.loadJoined) + l.joined,
      partitions: leases.owned(),
      join: {
        duplicates: sum((s) => s.join.duplicates),
        late: sum((s) => s.join.late),
        openWindows: sum((s) => s.join.openWindows),
        openRequests: sum((s) => s.join.openRequests),
        incompleteWindows: sum((s) => s.join.incompleteWindows),
        closedListed: sum((s) => s.join.closedListed),
      },
    };
  };
  const pending = async () => {
    let n = await load.pending();
    for (const p of live.values()) n += await p.pending();
    return n;
  };
  /** The analyzer's own health, as a point for the pipeline dashboard. */
  const writeStats = async () => {
    const s = stats();
    const latest = Math.max(0, ...[...live.values()].map((p) => p.stats().store.latestWindowEndMs));
    const received = Object.values(s.received).reduce((a, b) => a + b, 0);
    const now = clock();
    await opts.sink.write([analyzerStatsPoint(name, now, { ...s, received, pending: await pending(), lagMs: latest > 0 ? Math.max(0, now - latest) : 0 }, replicaId)]);
  };
  let stopped = false;
  const statsTimer = setInterval(() => !stopped && writeStats().catch((err) => log(`stats: ${errorMessage(err)}`)), opts.statsIntervalMs ?? 10_000);
  statsTimer.unref();

  let stopping: Promise<void> | undefined;
  return {
    stats,
    async idle(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        for (const p of live.values()) await p.settle().catch((err) => log(`settling: ${errorMessage(err)}`));
        if ((await pending()) === 0) {
          await writeStats().catch((err) => log(`stats: ${errorMessage(err)}`));
          return true;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      return false;
    },
    stop() {
      return (stopping ??= (async () => {
        stopped = true;
        const stopDeadline = Date.now() + grace;
        stopAt = stopDeadline;
        clearInterval(statsTimer);
        await query?.stop();
        await leases.stop(); // stops each partition (onRelease), within its grace
        publisher.close();
        // LOAD within what is left of the grace: a reader waiting for results stuck in retries (a
        // bucket's leader gone) ends when the retries are stopped; those results come again.
        const loadClosed = load.close();
        await withTimeout(loadClosed, Math.max(0, stopDeadline - Date.now()), "closing LOAD").catch(() => undefined);
        loadRetry.stop();
        await loadWriter.close();
        await loadClosed;
        // InfluxDB may be down: the last stats and the sink's close get a second each, not for ever.
        await withTimeout(writeStats(), 1000, "writing the final stats").catch((err) => log(`final stats: ${errorMessage(err)}`));
        await withTimeout(opts.sink.close(), 1000, "closing the InfluxDB sink").catch(() => undefined);
      })());
    },
  };
}
