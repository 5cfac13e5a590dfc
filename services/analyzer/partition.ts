import type { JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { createLifecycle, errorMessage, STREAM_SUBJECTS } from "../../shared/mod.ts";
import type { AckedPublisher } from "../../shared/mod.ts";
import type { CheckpointStore } from "./checkpoint.ts";
import { bindConsumer, type BoundConsumer, type Token } from "./consumers.ts";
import type { InfluxSink } from "./influx-sink.ts";
import { createIntake, type InputStream } from "./intake.ts";
import { createWindowJoin, type JoinOptions, type JoinStats } from "./join.ts";
import { createPacer } from "./pacing.ts";
import type { LoadJoin } from "./load-join.ts";
import { createPointWriter } from "./point-writer.ts";
import { retrying } from "./retry.ts";
import { createStore, type StoreOptions, type StoreStats } from "./store.ts";

/**
 * One partition's pipeline: consumers → intake → join → store, and its checkpoints. A partition is
 * the unit replicas split (partitions.ts), so it owns its join state, its InfluxDB writer (one write
 * in flight per partition) and its checkpoint; letting it go is stopping it, and the replica that
 * takes it over restarts from its last checkpoint.
 *
 * A checkpoint (every `checkpointIntervalMs`): drain the join; take, in the same turn, its snapshot,
 * each consumer's position and the messages done so far; wait until the outputs handed to the store
 * before it are stored; write it; then acknowledge those messages.
 */
export interface PartitionOptions {
  partition: number;
  /** Consumers filtered to the partition's subjects (`power.v1.*.<p>`), or reading everything. */
  filtered: boolean;
  name: string;
  /** Where acknowledgements go (consumers.ts). */
  nc: NatsConnection;
  jsm: JetStreamManager;
  js: JetStreamClient;
  publisher: AckedPublisher;
  sink: InfluxSink;
  checkpoints: CheckpointStore;
  loadJoin: LoadJoin;
  join?: JoinOptions;
  rawSamples?: boolean;
  carbon?: StoreOptions["carbon"];
  tickMs?: number;
  checkpointIntervalMs?: number;
  clock?: () => number;
  log?: (line: string) => void;
}

export interface PartitionStats {
  received: Record<InputStream, number>;
  deadLettered: number;
  acked: number;
  /** Acknowledgements sent a second time: the server's ack floor had not passed them 10 s later (consumers.ts). */
  reacked: number;
  sinkRetries: number;
  pointsRejected: number;
  checkpoints: number;
  checkpointBytes: number;
  consumersRecreated: number;
  /** Times a stream waited for the others to catch up (pacing.ts), and the longest wait. */
  pacing: { holds: number; longestHoldMs: number };
  store: StoreStats;
  join: JoinStats;
}

export interface Partition {
  stats(): PartitionStats;
  /** Not yet read plus read and not acknowledged, over the partition's consumers. */
  pending(): Promise<number>;
  /** Drains and checkpoints now (acknowledging what it covers). */
  settle(): Promise<void>;
  /** Stops reading, stores and checkpoints what it can within `graceMs`, and lets the rest come again. */
  stop(graceMs: number): Promise<void>;
}

export const DEFAULT_CHECKPOINT_INTERVAL_MS = 1000;
/**
 * How often the join is drained when messages come slowly (a drain looks only at nodes with new
 * input, so an idle tick costs nothing): the delay it adds between a window's last message and its
 * row, on top of the writer's linger.
 */
export const DEFAULT_TICK_MS = 100;
const DEFAULT_PARTITION_GRACE_MS = 10_000;
/** Messages between drains while reading fast (a timer drains when it is slow). */
const DRAIN_EVERY = 1024;
const INPUTS: InputStream[] = ["POWER", "WORK", "REQUESTS"];

export async function startPartition(opts: PartitionOptions): Promise<Partition> {
  const log = opts.log ?? (() => {});
  const p = opts.partition;
  const stats = { acked: 0, sinkRetries: 0, checkpoints: 0, checkpointBytes: 0 };
  let ckpt;
  try {
    ckpt = await opts.checkpoints.load(p);
  } catch (err) {
    log(`partition ${p}: its checkpoint cannot be read, starting without (results of requests open at the crash may be stored incomplete): ${errorMessage(err)}`);
  }
  const join = createWindowJoin<Token>(opts.join ?? {});
  if (ckpt) join.restore(ckpt.join);
  const onRetry = () => stats.sinkRetries++;
  // Back-off capped at 2 s: a NATS server restarting answers "jetstream is not enabled" for a few
  // seconds, and a 10-s cap made the analyzer catch up 6 s after it recovered instead of 1–2 s.
  const retry = retrying({ log, onRetry, maxDelayMs: 2000 });
  const writer = createPointWriter(opts.sink, { log, onRetry });
  const store = createStore<Token>({ writer, publisher: opts.publisher, loadJoin: opts.loadJoin, retry, rawSamples: opts.rawSamples ?? false, ...(opts.carbon ? { carbon: opts.carbon } : {}), log });
  const intake = createIntake({ next: join, js: opts.js, retry, ...(opts.clock ? { clock: opts.clock } : {}) });

  const drain = () => {
    const out = join.drain();
    store.store(out);
    for (const t of out.ackable) t.done();
  };
  let sinceDrain = 0;
  const pacer = createPacer(INPUTS);
  const consumers: BoundConsumer[] = [];
  for (const stream of INPUTS) {
    const durable = opts.filtered ? `${opts.name}-${stream.toLowerCase()}-p${p}` : `${opts.name}-${stream.toLowerCase()}`;
    const prefix = STREAM_SUBJECTS[stream].replace(/\.>$/, "");
    consumers.push(
      await bindConsumer({
        nc: opts.nc,
        jsm: opts.jsm,
        js: opts.js,
        spec: { stream, durable, ...(opts.filtered ? { filterSubject: `${prefix}.*.${p}` } : {}) },
        ...(ckpt?.consumers[durable] ? { resume: ckpt.consumers[durable] } : {}),
        ...(opts.clock ? { clock: opts.clock } : {}),
        log,
        handle(m: JsMsg, token: Token) {
          intake.handle(stream, m, token);
          pacer.note(stream, m.info.timestampNanos / 1e6);
          let ready: Promise<void> | undefined;
          if (++sinceDrain >= DRAIN_EVERY) {
            sinceDrain = 0;
            drain();
            ready = store.ready(); // InfluxDB or NATS slow: stop reading until the store catches up
          }
          const held = pacer.wait(stream); // ahead of the other streams: let them catch up
          return held && ready ? Promise.all([held, ready]).then(() => undefined) : (held ?? ready);
        },
      }),
    );
  }

  let checkpointing: Promise<void> | undefined;
  const checkpoint = (): Promise<void> =>
    (checkpointing ??= (async () => {
      try {
        drain();
        const snapshot = { v: 1 as const, writtenMs: (opts.clock ?? Date.now)(), consumers: Object.fromEntries(consumers.map((c) => [c.spec.durable, c.position()])), join: join.snapshot() };
        const toAck = consumers.map((c) => c.takeDone());
        await store.barrier();
        stats.checkpointBytes = await retry("writing the checkpoint", () => opts.checkpoints.save(p, snapshot));
        stats.checkpoints++;
        consumers.forEach((c, i) => c.ack(toAck[i]!));
        stats.acked += toAck.reduce((n, d) => n + d.replies.length, 0);
      } finally {
        checkpointing = undefined;
      }
    })());
  let stopped = false;
  const tick = setInterval(() => !stopped && drain(), opts.tickMs ?? DEFAULT_TICK_MS);
  const every = setInterval(() => {
    if (!stopped && !checkpointing) checkpoint().catch((err) => log(`partition ${p}: checkpoint: ${errorMessage(err)}`));
  }, opts.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS);
  tick.unref();
  every.unref();

  // Stopping: stop reading, store and checkpoint what the join holds within the grace; past it,
  // abandon the writes (InfluxDB down) and let the rest be read again at the next start.
  const life = createLifecycle({
    graceMs: DEFAULT_PARTITION_GRACE_MS,
    graceful: async () => {
      stopped = true;
      pacer.close();
      clearInterval(tick);
      clearInterval(every);
      await Promise.all(consumers.map((c) => c.close()));
      await checkpointing?.catch(() => undefined);
      await checkpoint();
      await writer.close();
    },
    force: async (graceMs) => {
      pacer.close();
      retry.stop();
      await writer.close();
      log(`partition ${p}: stopped before its outputs were stored (${graceMs} ms grace); what its last checkpoint does not cover is read again at the next start`);
    },
  });
  return {
    stats: () => ({
      ...intake.stats(),
      ...stats,
      pointsRejected: writer.stats().rejected + store.stats().pointsUnbuildable,
      consumersRecreated: consumers.reduce((n, c) => n + c.recreated(), 0),
      reacked: consumers.reduce((n, c) => n + c.reacked(), 0),
      pacing: pacer.stats(),
      store: store.stats(),
      join: join.stats(),
    }),
    async pending() {
      let n = 0;
      for (const c of consumers) n += await c.pending();
      return n;
    },
    async settle() {
      await checkpointing?.catch(() => undefined);
      await checkpoint();
    },
    stop(graceMs) {
      return life.stop(graceMs).then(() => undefined);
    },
  };
}
