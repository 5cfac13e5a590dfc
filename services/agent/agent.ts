import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { KV_NODES, createLifecycle, errorMessage, subjectId, createOutbox, encode, ensureStreams, openBucket, resolveReplicas, subjects, type Clock, type InstanceInfo, type NodeInventory, type RequestBatch, type RequestEvent, type OutboxStats } from "../../shared/mod.ts";
import type { PowerSource, SourceDescription } from "./power-source.ts";
import { startRequestTap, type RequestTap } from "./request-tap.ts";
import { createSampler, type CpuEnergyMeter, type SamplerStats } from "./sampler.ts";
import { createWorkTracker } from "./work-tracker.ts";
import { startEngineMetrics, type EngineMetricsMode, type EngineMetricsStats } from "./engine-metrics.ts";
import { startClockControl, STOP_GRACE_MS as CLOCK_STOP_GRACE_MS, type ClockBackend, type ClockControl } from "./clock-control.ts";
import { createWindowCarryFile, type WindowCarryFile } from "./window-carry.ts";

export const AGENT_VERSION = "0.1.0";
/** How long the agent's last publish may wait for NATS. */
const FLUSH_TIMEOUT_MS = 10_000;
/** Its stop: the clocks' restore, the flush, and some for the taps, the sampler and the rest. */
const STOP_GRACE_MS = CLOCK_STOP_GRACE_MS + FLUSH_TIMEOUT_MS + 10_000;

export interface AgentInstance extends InstanceInfo {
  /** Where the tap listens for this instance ("127.0.0.1:9000"; port 0 = any free port). */
  listen: string;
}

export interface AgentOptions {
  nc: NatsConnection;
  node: string;
  source: PowerSource;
  instances: AgentInstance[];
  clock: Clock;
  sampleIntervalMs?: number;
  publishIntervalMs?: number;
  heartbeatMs?: number;
  continuousUsage?: boolean;
  /**
   * Each instance's prefill rate, prompt tokens/s (`joulestream calibrate`): with it, WORK carries an
   * estimate of the prefill of prompts still waiting for their first token (work-tracker.ts).
   */
  prefillTokensPerS?: number;
  /** Each instance's KV cache, tokens: with the rate, a prompt is not estimated to prefill before it fits. */
  kvCapacityTokens?: number;
  /** With prefillTokensPerS: a prompt token's prefill time grows with its position (work-tracker.ts prefillPositionCost). */
  prefillPositionCost?: { k: number; calibrationPosition: number };
  /**
   * Scrape each instance's `<upstream>/metrics` for vLLM's running/waiting gauges (engine-metrics.ts):
   * with the rate, only prompts the engine admitted are estimated. Default off; auto: where they answer.
   */
  engineMetrics?: EngineMetricsMode;
  engineMetricsIntervalMs?: number;
  /**
   * Where the outbox spills when NATS is unreachable (memory only without it), and where the open
   * POWER window is kept so that a restart continues it (window-carry.ts).
   */
  spoolDir?: string;
  /** How old the last run's open window may be and still be continued (default MAX_CARRY_GAP_MS). */
  maxCarryGapMs?: number;
  /** Whole-node CPU energy (RAPL) to carry in each POWER window. */
  cpuEnergy?: CpuEnergyMeter;
  /** Opt-in GPU clock / power-limit control (--allow-clock-control), served on ctl.v1.<node>. */
  clockBackend?: ClockBackend;
  /** Replicas of the streams and the nodes bucket it creates; default: the server's (resolveReplicas). */
  replicas?: number;
  log?: (line: string) => void;
}

export interface AgentStats {
  sampler: SamplerStats;
  publisher: OutboxStats;
  taps: Record<string, ReturnType<RequestTap["stats"]>>;
  engineMetrics: EngineMetricsStats;
}

export interface Agent {
  /** The tap URL of each instance, by instance id: point clients here instead of the server. */
  readonly tapUrls: Record<string, string>;
  readonly description: SourceDescription;
  stats(): AgentStats;
  /** Closes the taps, closes the last window, flushes everything to NATS. Idempotent. */
  stop(): Promise<void>;
}

export async function startAgent(opts: AgentOptions): Promise<Agent> {
  const log = opts.log ?? (() => {});
  const jsm = await jetstreamManager(opts.nc);
  const replicas = resolveReplicas(opts.nc, opts.replicas, { log });
  await ensureStreams(jsm, ["POWER", "REQUESTS", "WORK", ...(opts.clockBackend ? (["AUDIT"] as const) : [])], { replicas, log });
  const description = await opts.source.describe();
  const requestsSubject = subjects.requests(opts.node);
  const publisher = createOutbox(opts.nc, {
    ownsSubject: (s) => subjectId(s) === opts.node,
    ...(opts.spoolDir ? { dir: opts.spoolDir } : {}),
    batched: [{ subject: requestsSubject, key: "events", envelope: requestBatcher(opts.node) }],
  });
  const tracker = createWorkTracker(opts.node, opts.instances, {
    ...(opts.prefillTokensPerS !== undefined ? { prefillTokensPerS: opts.prefillTokensPerS } : {}),
    ...(opts.kvCapacityTokens !== undefined ? { kvCapacityTokens: opts.kvCapacityTokens } : {}),
    ...(opts.prefillPositionCost ? { prefillPositionCost: opts.prefillPositionCost } : {}),
  });
  let carryFailed = false;
  const carryFile: WindowCarryFile | undefined = opts.spoolDir
    ? createWindowCarryFile(join(opts.spoolDir, "power-window.carry"), (err) => {
        // Said once: a spool dir gone read-only would otherwise say it ten times a second.
        if (!carryFailed) log(`cannot save the open window (a restart would lose up to a window of energy): ${errorMessage(err)}`);
        carryFailed = true;
      })
    : undefined;
  const carried = carryFile?.load();
  if (carried && !carried.state && carried.reason !== "none saved") log(`power window: the last run's open window is ${carried.reason}; starting afresh`);
  const emit = (e: RequestEvent) => publisher.publish(requestsSubject, e);

  const sampler = createSampler({
    source: opts.source,
    clock: opts.clock,
    node: opts.node,
    instances: opts.instances.map((i) => i.id),
    // The node's GPUs: those read, and those the source cannot read, which every window reports missing.
    gpus: [...description.gpus.map((g) => g.index), ...(description.unreadableGpus ?? [])].sort((a, b) => a - b),
    ...(opts.sampleIntervalMs ? { sampleIntervalMs: opts.sampleIntervalMs } : {}),
    ...(opts.publishIntervalMs ? { publishIntervalMs: opts.publishIntervalMs } : {}),
    onBoundary(start, end) {
      for (const w of tracker.closeWindow(start, end)) publisher.publish(subjects.work(opts.node), w);
    },
    onWindow(batch) {
      publisher.publish(subjects.power(opts.node), batch);
    },
    onError(err) {
      log(`sample failed: ${errorMessage(err)}`);
    },
    ...(opts.cpuEnergy ? { cpuEnergy: opts.cpuEnergy } : {}),
    ...(carryFile
      ? {
          carry: {
            ...(carried?.state ? { resumed: carried.state } : {}),
            ...(opts.maxCarryGapMs !== undefined ? { maxGapMs: opts.maxCarryGapMs } : {}),
            save: (state) => carryFile.save(state),
            say: (line) => log(`power window: ${line}`),
          },
        }
      : {}),
    health() {
      const p = publisher.stats();
      return { queued: p.queued, published: p.published, dropped: p.dropped, spilled: p.spilled };
    },
  });

  const taps: Record<string, RequestTap> = {};
  for (const inst of opts.instances) {
    const [host, port] = splitHostPort(inst.listen);
    taps[inst.id] = await startRequestTap({
      node: opts.node,
      instance: inst,
      host,
      port,
      clock: opts.clock,
      tracker,
      emit,
      ...(opts.continuousUsage === undefined ? {} : { continuousUsage: opts.continuousUsage }),
    });
  }
  sampler.start();
  // Only the prefill spread uses the engine's counts: without a rate there is nothing to scrape for.
  const engineMetrics = startEngineMetrics({
    instances: opts.instances,
    mode: opts.prefillTokensPerS !== undefined ? (opts.engineMetrics ?? "off") : "off",
    clock: opts.clock,
    ...(opts.engineMetricsIntervalMs !== undefined ? { intervalMs: opts.engineMetricsIntervalMs } : {}),
    onCounts: (instance, tMs, counts) => tracker.engine(instance, tMs, counts),
    log,
  });
  const clockControl: ClockControl | undefined = opts.clockBackend
    ? await startClockControl({ nc: opts.nc, node: opts.node, gpus: description.gpus, backend: opts.clockBackend, log, ...(opts.spoolDir ? { stateFile: join(opts.spoolDir, "clock-control.json") } : {}) })
    : undefined;

  // Inventory + heartbeat. A KV failure is logged, never fatal: power and requests matter more.
  const startedMs = opts.clock.nowMs();
  let kv: KV | undefined;
  const inventory = (): NodeInventory => ({
    v: 1,
    kind: "inventory",
    node: opts.node,
    hostname: hostname(),
    agentVersion: AGENT_VERSION,
    source: opts.source.kind,
    ...(description.driverVersion ? { driverVersion: description.driverVersion } : {}),
    gpus: description.gpus,
    ...(description.unreadableGpus?.length ? { unreadableGpus: description.unreadableGpus } : {}),
    instances: opts.instances.map(({ id, upstream, gpus, model }) => ({ id, upstream, gpus, ...(model ? { model } : {}) })),
    startedMs,
    heartbeatMs: opts.clock.nowMs(),
    publishIntervalMs: opts.publishIntervalMs ?? 1000,
    sampleIntervalMs: opts.sampleIntervalMs ?? 100,
  });
  const beat = async () => {
    try {
      kv ??= await openBucket(opts.nc, KV_NODES, { history: 1 }, { replicas, log });
      await kv.put(opts.node, encode(inventory()));
    } catch (err) {
      log(`inventory heartbeat failed: ${errorMessage(err)}`);
    }
  };
  await beat();
  const heartbeat = setInterval(beat, opts.heartbeatMs ?? 10_000);
  heartbeat.unref();

  // Stopping, in order: clocks (whatever else fails, the GPUs go back to their defaults), taps (no
  // new requests), the sampler (it closes the last window, and its WORK), the last publish. Forced:
  // what is still queued goes to the spool (kept on disk with a spool dir) and the source closes.
  const life = createLifecycle({
    graceMs: STOP_GRACE_MS,
    graceful: async () => {
      clearInterval(heartbeat);
      await clockControl?.stop();
      await Promise.all(Object.values(taps).map((t) => t.close()));
      await engineMetrics.stop();
      await sampler.stop();
      await carryFile?.flush();
      const flushed = await publisher.flush(FLUSH_TIMEOUT_MS);
      if (!flushed) log(`stopping with ${publisher.stats().queued} messages unpublished`);
      await publisher.close();
      await opts.source.close();
    },
    force: async (graceMs) => {
      log(`not stopped within ${graceMs} ms: closing with ${publisher.stats().queued} messages unpublished`);
      await publisher.close();
      await opts.source.close();
    },
  });
  return {
    tapUrls: Object.fromEntries(Object.entries(taps).map(([id, t]) => [id, t.url])),
    description,
    stats: () => ({
      sampler: sampler.stats(),
      publisher: publisher.stats(),
      taps: Object.fromEntries(Object.entries(taps).map(([id, t]) => [id, t.stats()])),
      engineMetrics: engineMetrics.stats(),
    }),
    async stop() {
      await life.stop();
    },
  };
}

/**
 * The envelope of each REQUESTS batch (the publisher adds its events, under `events`). A batch id is this run's id and a sequence number:
 * new for every batch, also across restarts (the server's duplicate window would otherwise drop a
 * restarted agent's first batches as re-publishes of the last run's).
 */
export function requestBatcher(node: string): () => Omit<RequestBatch, "events"> {
  const run = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
  let seq = 0;
  return () => ({ v: 1, kind: "request_batch", msgId: `${node}:reqs:${run}:${seq++}`, node });
}

export function splitHostPort(listen: string): [string, number] {
  const i = listen.lastIndexOf(":");
  if (i < 0) return ["127.0.0.1", Number(listen)];
  // `:9000` listens on every interface, as `0.0.0.0:9000` does (and is shown so in the tap's URL).
  return [listen.slice(0, i).replace(/^\[|\]$/g, "") || "0.0.0.0", Number(listen.slice(i + 1))];
}
