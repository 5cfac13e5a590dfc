import type { NatsConnection } from "@nats-io/nats-core";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import {
  decodeAs,
  encode,
  ensureStreams,
  powerBatch,
  requestEvent,
  subjects,
  workWindow,
  type DeadLetter,
  type StreamName,
} from "../../shared/mod.ts";
import { createWindowJoin, type JoinOutput, type JoinStats } from "./join.ts";
import type { InfluxSink } from "./influx-sink.ts";
import { instanceWindowPoint, nodeWindowPoints, requestPoint } from "./points.ts";
import { openEmittedStore } from "./emitted-store.ts";

/**
 * The analyzer service: durable pull consumers on POWER, WORK and REQUESTS feed the windowed join;
 * its outputs go to InfluxDB and (per finished request) to the ENERGY stream, and only then are the
 * inputs acknowledged. A sink failure is retried with backoff while consumption waits (backpressure):
 * outputs are never dropped, since their inputs would then be lost too.
 */
export interface AnalyzerOptions {
  nc: NatsConnection;
  sink: InfluxSink;
  /** Durable consumer name prefix; replicas sharing it share the work. */
  name?: string;
  prefillWeight?: number;
  allowedLatenessMs?: number;
  /** How often the join is drained even without new messages. */
  tickMs?: number;
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
  join: JoinStats;
}

export interface Analyzer {
  stats(): AnalyzerStats;
  /** Resolves once every message currently in the streams has been processed and acknowledged. */
  idle(timeoutMs?: number): Promise<boolean>;
  stop(): Promise<void>;
}

const ACK_WAIT_NS = 15 * 60 * 1e9;

export async function startAnalyzer(opts: AnalyzerOptions): Promise<Analyzer> {
  const log = opts.log ?? (() => {});
  const name = opts.name ?? "analyzer";
  const jsm = await jetstreamManager(opts.nc);
  await ensureStreams(jsm, ["POWER", "WORK", "REQUESTS", "ENERGY", "DEADLETTER"]);
  const js = jetstream(opts.nc);
  const emitted = await openEmittedStore(opts.nc);
  const join = createWindowJoin<JsMsg>({
    ...(opts.prefillWeight !== undefined ? { prefillWeight: opts.prefillWeight } : {}),
    ...(opts.allowedLatenessMs !== undefined ? { allowedLatenessMs: opts.allowedLatenessMs } : {}),
  });
  const stats = { received: { POWER: 0, WORK: 0, REQUESTS: 0 } as Record<string, number>, deadLettered: 0, acked: 0, requestsEmitted: 0, windowsClosed: 0, sinkRetries: 0, replaySkipped: 0 };
  let stopped = false;

  const deadLetter = async (stream: StreamName, m: JsMsg, reason: string, detail: string) => {
    const dl: DeadLetter = { v: 1, kind: "dead_letter", stream, subject: m.subject, seq: m.seq, reason, detail, tMs: Date.now(), data: m.data };
    await js.publish(subjects.deadLetter(stream), encode(dl), { msgID: `dlq:${stream}:${m.seq}` });
    stats.deadLettered++;
    m.ack();
  };

  // Drains the join, stores its outputs, then acknowledges. Serialized: one store in flight.
  let storing: Promise<void> = Promise.resolve();
  const store = (out: JoinOutput<JsMsg>) => async () => {
    let delay = 200;
    for (;;) {
      try {
        // A request stored before a restart is not stored again from the remnants replayed after it.
        const fresh = [];
        for (const r of out.requests) if (!(await emitted.has(r.node, r.requestId))) fresh.push(r);
        stats.replaySkipped += out.requests.length - fresh.length;
        const points = [...out.nodeWindows.flatMap(nodeWindowPoints), ...out.instanceWindows.map(instanceWindowPoint), ...fresh.map(requestPoint)];
        await opts.sink.write(points);
        for (const r of fresh) await js.publish(subjects.energy(r.node), encode(r), { msgID: r.msgId });
        await Promise.all(fresh.map((r) => emitted.add(r.node, r.requestId)));
        break;
      } catch (err) {
        stats.sinkRetries++;
        log(`storing results failed, retrying in ${delay} ms: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 10_000);
      }
    }
    stats.requestsEmitted += out.requests.length;
    stats.windowsClosed += out.nodeWindows.length;
    for (const m of out.ackable) m.ack();
    stats.acked += out.ackable.length;
  };
  const tick = (flush = false): Promise<void> => {
    storing = storing.then(() => store(flush ? join.flush() : join.drain())());
    return storing;
  };

  const loops: { messages: ConsumerMessages; done: Promise<void> }[] = [];
  const consumeStream = async (stream: "POWER" | "WORK" | "REQUESTS") => {
    const durable = `${name}-${stream.toLowerCase()}`;
    try {
      await jsm.consumers.info(stream, durable);
    } catch {
      await jsm.consumers.add(stream, {
        durable_name: durable,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: ACK_WAIT_NS,
        max_ack_pending: 200_000,
      });
    }
    const consumer = await js.consumers.get(stream, durable);
    const messages = await consumer.consume({ max_messages: 512 });
    const done = (async () => {
      let sinceTick = 0;
      for await (const m of messages) {
        stats.received[stream]!++;
        if (stream === "POWER") {
          const d = decodeAs(powerBatch, m.data);
          if (d.ok) join.addPower(d.value, m);
          else await deadLetter(stream, m, d.reason, d.detail);
        } else if (stream === "WORK") {
          const d = decodeAs(workWindow, m.data);
          if (d.ok) join.addWork(d.value, m);
          else await deadLetter(stream, m, d.reason, d.detail);
        } else {
          const d = decodeAs(requestEvent, m.data);
          if (d.ok) join.addRequest(d.value, m);
          else await deadLetter(stream, m, d.reason, d.detail);
        }
        // Backpressure: when storing is slow, consumption waits for it every so many messages.
        if (++sinceTick >= 256) {
          sinceTick = 0;
          await tick();
        }
      }
    })();
    loops.push({ messages, done });
  };
  await consumeStream("POWER");
  await consumeStream("WORK");
  await consumeStream("REQUESTS");
  const timer = setInterval(() => {
    if (!stopped) tick().catch((err) => log(`tick failed: ${(err as Error).message}`));
  }, opts.tickMs ?? 250);

  const pendingInStreams = async (): Promise<number> => {
    let n = 0;
    for (const s of ["POWER", "WORK", "REQUESTS"] as const) {
      const ci = await jsm.consumers.info(s, `${name}-${s.toLowerCase()}`);
      n += ci.num_pending + ci.num_ack_pending;
    }
    return n;
  };

  let stopping: Promise<void> | undefined;
  return {
    stats: () => ({ ...stats, received: { ...stats.received }, join: join.stats() }),
    async idle(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        await tick();
        if ((await pendingInStreams()) === 0) return true;
        await new Promise((r) => setTimeout(r, 100));
      }
      return false;
    },
    stop() {
      return (stopping ??= (async () => {
        stopped = true;
        clearInterval(timer);
        for (const l of loops) await l.messages.close();
        await Promise.all(loops.map((l) => l.done));
        await tick();
        await opts.sink.close();
      })());
    },
  };
}
