import { randomUUID } from "node:crypto";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import type { Service } from "@nats-io/services";
import { Kvm } from "@nats-io/kv";
import {
  decodeAs,
  encode,
  ensureStreams,
  KV_NODES,
  loadResult,
  powerBatch,
  eventsOf,
  requestEvent,
  requestsMessage,
  STREAM_SUBJECTS,
  subjectId,
  subjects,
  validate,
  workWindow,
  type DeadLetter,
  type InfluxTarget,
  type StreamName,
} from "../../shared/mod.ts";
import { ensureConsumer } from "./consumers.ts";
import { openEmittedStore } from "./emitted-store.ts";
import type { InfluxSink, Point } from "./influx-sink.ts";
import { createWindowJoin, type JoinOutput, type JoinStats } from "./join.ts";
import { openLoadJoin, type Slo } from "./load-join.ts";
import { startPartitionLeases, type PartitionLeases } from "./partitions.ts";
import { analyzerStatsPoint, instanceWindowPoint, nodeWindowPoints, requestLoadPoint, requestPoint } from "./points.ts";
import { startQueryService } from "./query-service.ts";

/**
 * The analyzer service: durable pull consumers on POWER, WORK and REQUESTS feed the windowed join;
 * its outputs go to InfluxDB and (per finished request) to the ENERGY stream, and only then are the
 * inputs acknowledged. A sink failure is retried with backoff while consumption waits (backpressure):
 * outputs are never dropped, since their inputs would then be lost too. LOAD results are joined to
 * request energy by request id (SLO attainment beside energy).
 *
 * Scale-out: replicas of the same `name` share the work through leases (partitions.ts). With
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
  prefillWeight?: number;
  allowedLatenessMs?: number;
  slo?: Slo;
  /** InfluxDB to answer the query API from (the same the sink writes). */
  influx?: InfluxTarget;
  /** How often the join is drained even without new messages. */
  tickMs?: number;
  statsIntervalMs?: number;
  log?: (line: string) => void;
}

export interface AnalyzerStats {
  received: Record<string, number>;
  deadLettered: number;
  acked: number;
  requestsEmitted: number;
  windowsClosed: number;
  sinkRetries: number;
  /** Requests recomputed from replayed windows but already stored before a restart. */
  replaySkipped: number;
  loadJoined: number;
  /** Points dropped because InfluxDB refused them for good (or they could not be built). */
  pointsRejected: number;
  partitions: number[];
  join: JoinStats;
}

export interface Analyzer {
  stats(): AnalyzerStats;
  /** Resolves once every message currently in the streams has been processed and acknowledged. */
  idle(timeoutMs?: number): Promise<boolean>;
  stop(): Promise<void>;
}

type InputStream = "POWER" | "WORK" | "REQUESTS" | "LOAD";

export async function startAnalyzer(opts: AnalyzerOptions): Promise<Analyzer> {
  const log = opts.log ?? (() => {});
  const name = opts.name ?? "analyzer";
  const replicaId = `${name}-${randomUUID().slice(0, 8)}`;
  const jsm = await jetstreamManager(opts.nc);
  // AUDIT and the nodes' inventory bucket too: agents run as node identities that may write to them
  // but not create them (infra/nats/auth.ts), so the operator's side does.
  await ensureStreams(jsm, ["POWER", "WORK", "REQUESTS", "LOAD", "ENERGY", "DEADLETTER", "AUDIT"]);
  await new Kvm(opts.nc).create(KV_NODES, { history: 1 });
  const js = jetstream(opts.nc);
  const emitted = await openEmittedStore(opts.nc, name);
  const loadJoin = await openLoadJoin(opts.nc, name, opts.slo ?? {});
  const join = createWindowJoin<Ack>({
    ...(opts.prefillWeight !== undefined ? { prefillWeight: opts.prefillWeight } : {}),
    ...(opts.allowedLatenessMs !== undefined ? { allowedLatenessMs: opts.allowedLatenessMs } : {}),
  });
  const stats = {
    received: { POWER: 0, WORK: 0, REQUESTS: 0, LOAD: 0 } as Record<string, number>,
    deadLettered: 0,
    acked: 0,
    requestsEmitted: 0,
    windowsClosed: 0,
    sinkRetries: 0,
    replaySkipped: 0,
    loadJoined: 0,
    pointsRejected: 0,
  };
  let latestWindowEndMs = 0;
  let stopped = false;

  const ackOf = (m: JsMsg): Ack => ({
    ack: () => {
      m.ack();
      stats.acked++;
    },
  });
  /** A refused message (or, with `part`, one refused event of a batch) goes to dlq.v1.<stream> as it came. */
  const deadLetter = async (stream: StreamName, m: JsMsg, reason: string, detail: string, part?: { index: number; data: Uint8Array; ack: Ack }) => {
    const dl: DeadLetter = { v: 1, kind: "dead_letter", stream, subject: m.subject, seq: m.seq, reason, detail: part ? `event ${part.index} of the batch: ${detail}` : detail, tMs: Date.now(), data: part?.data ?? m.data };
    await js.publish(subjects.deadLetter(stream), encode(dl), { msgID: part ? `dlq:${stream}:${m.seq}:${part.index}` : `dlq:${stream}:${m.seq}` });
    stats.deadLettered++;
    (part?.ack ?? ackOf(m)).ack();
  };

  /** Retries a store step with backoff until it succeeds: consumption waits meanwhile. */
  const persist = async (what: string, fn: () => Promise<void>) => {
    let delay = 200;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        stats.sinkRetries++;
        log(`${what} failed, retrying in ${delay} ms: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 10_000);
      }
    }
  };

  /**
   * A point InfluxDB refuses for good (400: unparsable, field type conflict, time out of range; 413)
   * would be retried forever and stop the whole pipeline behind it: the batch is split until the
   * refused points are found, and those alone are dropped (logged, counted). Outages still retry.
   */
  const permanent = (err: unknown): boolean => {
    const code = ((err as { cause?: { statusCode?: number } })?.cause ?? (err as { statusCode?: number }))?.statusCode;
    return code !== undefined && code >= 400 && code < 500 && code !== 408 && code !== 429;
  };
  const writeIsolating = async (points: Point[]): Promise<void> => {
    if (points.length === 0) return;
    try {
      await opts.sink.write(points);
    } catch (err) {
      if (!permanent(err)) throw err;
      if (points.length === 1) {
        stats.pointsRejected++;
        log(`InfluxDB refused a point, dropped: ${(err as Error).message}`);
        return;
      }
      const mid = points.length >> 1;
      await writeIsolating(points.slice(0, mid));
      await writeIsolating(points.slice(mid));
    }
  };
  /** A point that cannot even be built (a non-finite value from a broken agent) is dropped, not retried. */
  const built = <I>(items: readonly I[], fn: (i: I) => Point | Point[]): Point[] =>
    items.flatMap((i) => {
      try {
        return fn(i);
      } catch (err) {
        stats.pointsRejected++;
        log(`point not built, dropped: ${(err as Error).message}`);
        return [];
      }
    });

  const store = (out: JoinOutput<Ack>) => async () => {
    await persist("storing results", async () => {
      // A request stored before a restart is not stored again from the remnants replayed after it.
      // The per-request round trips (KV, ENERGY) run concurrently: a batch waits for the slowest, not the sum.
      const seen = await Promise.all(out.requests.map((r) => emitted.has(r.node, r.requestId)));
      const fresh = out.requests.filter((_, i) => !seen[i]);
      const points = [...built(out.nodeWindows, nodeWindowPoints), ...built(out.instanceWindows, instanceWindowPoint), ...built(fresh, requestPoint)];
      await writeIsolating(points);
      await Promise.all(fresh.map((r) => js.publish(subjects.energy(r.node), encode(r), { msgID: r.msgId })));
      const joined = built((await Promise.all(fresh.map((r) => loadJoin.addEnergy(r)))).flatMap((j) => (j ? [j] : [])), requestLoadPoint);
      await writeIsolating(joined);
      await Promise.all(fresh.map((r) => emitted.add(r.node, r.requestId)));
      stats.replaySkipped += out.requests.length - fresh.length;
      stats.loadJoined += joined.length;
    });
    for (const w of out.nodeWindows) latestWindowEndMs = Math.max(latestWindowEndMs, w.windowEndMs);
    stats.requestsEmitted += out.requests.length;
    stats.windowsClosed += out.nodeWindows.length;
    for (const m of out.ackable) m.ack();
  };
  // One store in flight; every message handler waits for it every so often (backpressure).
  let storing: Promise<void> = Promise.resolve();
  const tick = (): Promise<void> =>
    (storing = storing.then(async () => {
      // Requests rebuilt only from replayed windows that were stored before a restart: let go of them.
      for (const o of join.orphans()) {
        if (await emitted.has(o.node, o.requestId)) {
          join.forget(o.node, o.requestId);
          stats.replaySkipped++;
        }
      }
      await store(join.drain())();
    }));

  /** The node a message speaks for must be the one its subject names: per-node permissions rest on it. */
  const foreign = (m: JsMsg, node: string) => (subjectId(m.subject) === node ? undefined : `node ${JSON.stringify(node)} on subject ${m.subject}`);
  const handle = async (stream: InputStream, m: JsMsg) => {
    stats.received[stream]!++;
    if (stream === "POWER") {
      const d = decodeAs(powerBatch, m.data);
      if (!d.ok) return deadLetter(stream, m, d.reason, d.detail);
      const f = foreign(m, d.value.node);
      return f ? deadLetter(stream, m, "subject", f) : join.addPower(d.value, ackOf(m));
    }
    if (stream === "WORK") {
      const d = decodeAs(workWindow, m.data);
      if (!d.ok) return deadLetter(stream, m, d.reason, d.detail);
      const f = foreign(m, d.value.node);
      return f ? deadLetter(stream, m, "subject", f) : join.addWork(d.value, ackOf(m));
    }
    if (stream === "REQUESTS") {
      const d = decodeAs(requestsMessage, m.data);
      if (!d.ok) return deadLetter(stream, m, d.reason, d.detail);
      const f = foreign(m, d.value.node);
      if (f) return deadLetter(stream, m, "subject", f);
      const events = eventsOf(d.value);
      const acks = sharedAck(ackOf(m), events.length);
      for (let i = 0; i < events.length; i++) {
        const e = validate(requestEvent, events[i]);
        const fe = e.ok ? foreign(m, e.value.node) : undefined;
        if (e.ok && !fe) join.addRequest(e.value, acks[i]!);
        else if (e.ok) await deadLetter(stream, m, "subject", fe!, { index: i, data: encode(events[i]), ack: acks[i]! });
        else await deadLetter(stream, m, e.reason, e.detail, { index: i, data: encode(events[i]), ack: acks[i]! });
      }
      return;
    }
    const d = decodeAs(loadResult, m.data);
    if (!d.ok) return deadLetter(stream, m, d.reason, d.detail);
    await persist("joining a load result", async () => {
      const j = await loadJoin.addLoad(d.value);
      if (j) {
        await writeIsolating(built([j], requestLoadPoint));
        stats.loadJoined++;
      }
    });
    m.ack();
  };

  const consumers = new Map<string, { messages: ConsumerMessages; done: Promise<void>; durable: string; stream: InputStream }>();
  const consume = async (stream: InputStream, partition?: number) => {
    const durable = partition === undefined ? `${name}-${stream.toLowerCase()}` : `${name}-${stream.toLowerCase()}-p${partition}`;
    const prefix = STREAM_SUBJECTS[stream].replace(/\.>$/, "");
    const { recreatedFromSeq } = await ensureConsumer(jsm, { stream, durable, ...(partition === undefined ? {} : { filterSubject: `${prefix}.*.${partition}` }) });
    if (recreatedFromSeq !== undefined) log(`${durable}: taking over unacknowledged messages from stream seq ${recreatedFromSeq}`);
    const messages = await (await js.consumers.get(stream, durable)).consume({ max_messages: 512 });
    const done = (async () => {
      let sinceTick = 0;
      for await (const m of messages) {
        await handle(stream, m);
        if (++sinceTick >= 256) {
          sinceTick = 0;
          await tick();
        }
      }
    })();
    consumers.set(durable, { messages, done, durable, stream });
  };
  /** Stops the partition's consumers (those whose name ends with `suffix`; all but LOAD without one). */
  const release = async (suffix: string | undefined) => {
    for (const [key, c] of consumers) {
      if (suffix ? !key.endsWith(suffix) : c.stream === "LOAD") continue;
      await c.messages.close();
      await c.done;
      consumers.delete(key);
    }
  };

  // Replicas of one name always share through leases: with one partition (no server mapping
  // needed) the second replica is a hot standby that takes over when the first stops renewing.
  const partitions = Math.max(1, opts.partitions ?? 0);
  await consume("LOAD");
  const leases: PartitionLeases = await startPartitionLeases({
    nc: opts.nc,
    group: name,
    replicaId,
    partitions,
    log,
    onAcquire: async (p) => {
      for (const s of ["POWER", "WORK", "REQUESTS"] as const) await consume(s, partitions > 1 ? p : undefined);
    },
    onRelease: async (p) => release(partitions > 1 ? `-p${p}` : undefined),
  });

  const query: Service | undefined = opts.influx ? await startQueryService(opts.nc, opts.influx) : undefined;

  const pending = async (): Promise<number> => {
    let n = 0;
    for (const c of consumers.values()) {
      const ci = await jsm.consumers.info(c.stream, c.durable);
      n += ci.num_pending + ci.num_ack_pending;
    }
    return n;
  };
  const timer = setInterval(() => {
    if (!stopped) tick().catch((err) => log(`tick failed: ${(err as Error).message}`));
  }, opts.tickMs ?? 250);
  /** The analyzer's own health, as a point for the pipeline dashboard. */
  const writeStats = async () => {
    const p = await pending();
    const received = Object.values(stats.received).reduce((a, b) => a + b, 0);
    const now = Date.now();
    await opts.sink.write([analyzerStatsPoint(name, now, { ...stats, received, pending: p, lagMs: latestWindowEndMs > 0 ? Math.max(0, now - latestWindowEndMs) : 0 }, replicaId)]);
  };
  const statsTimer = setInterval(() => {
    if (!stopped) writeStats().catch((err) => log(`stats: ${(err as Error).message}`));
  }, opts.statsIntervalMs ?? 10_000);
  statsTimer.unref();

  let stopping: Promise<void> | undefined;
  return {
    stats: () => ({ ...stats, received: { ...stats.received }, partitions: leases.owned(), join: join.stats() }),
    async idle(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        await tick();
        if ((await pending()) === 0) {
          await writeStats();
          return true;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      return false;
    },
    stop() {
      return (stopping ??= (async () => {
        stopped = true;
        clearInterval(timer);
        clearInterval(statsTimer);
        await query?.stop();
        await leases.stop();
        for (const c of consumers.values()) await c.messages.close();
        await Promise.all([...consumers.values()].map((c) => c.done));
        await tick();
        await writeStats().catch((err) => log(`final stats: ${(err as Error).message}`));
        await opts.sink.close();
      })());
    },
  };
}

/** What the join holds for an input until it may be acknowledged: a message, or one event's share of a batch. */
interface Ack {
  ack(): void;
}

/**
 * The acknowledgement of a message that carries `n` events (a REQUESTS batch), split into `n`
 * shares: the message is acknowledged when the last share is, that is when every one of its
 * events is in stored output (or dead-lettered). A share acknowledged twice counts once.
 */
export function sharedAck(whole: Ack, n: number): Ack[] {
  if (n === 1) return [whole];
  let left = n;
  return Array.from({ length: n }, () => {
    let done = false;
    return {
      ack() {
        if (done) return;
        done = true;
        if (--left === 0) whole.ack();
      },
    };
  });
}
