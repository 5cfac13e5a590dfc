import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError, type ConsumerConfig, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { errorMessage, type StreamName } from "../../shared/mod.ts";
import type { ConsumerPosition } from "./checkpoint.ts";

/**
 * The analyzer's durable pull consumers. Messages are acknowledged only through checkpoints
 * (checkpoint.ts), which may be far behind; the ack wait is long so that the server does not
 * redeliver what the analyzer still holds. After a restart, unacknowledged messages are not waited
 * for: the consumer is recreated from the first sequence the checkpoint does not cover (or the
 * server's acknowledgement floor, whichever is earlier), and what the checkpoint covers is skipped.
 */
export const ACK_WAIT_NS = 30 * 60 * 1e9;
/** Messages per pull: large pulls amortize the round trip (the consumer keeps them flowing). */
export const PULL_BATCH = 4096;
/**
 * How long a pull waits on the server. A pull whose consumer leader died with its server is noticed
 * only after two missed heartbeats (half of this each): with nats.js's default 30 s the analyzer
 * stopped reading for 30-40 s after a server loss (faults/README.md); 5 s bounds it near 5 s.
 */
export const PULL_EXPIRES_MS = 5000;

export interface ConsumerSpec {
  stream: StreamName;
  durable: string;
  /** e.g. `power.v1.*.3` for partition 3 (with the server's partition mapping). */
  filterSubject?: string;
  maxAckPending?: number;
}

/** What JsMsg.ack() sends (the library does not export it). */
const ACK = Uint8Array.of(43, 65, 67, 75); // "+ACK"

/** Where a message's acknowledgement goes (JsMsgImpl has it; the JsMsg type does not say so). */
const replyOf = (m: JsMsg): string => (m as unknown as { reply: string }).reply;

/** The JetStream API said the consumer does not exist (code 10014), and nothing else. */
const isNotFound = (err: unknown) => err instanceof JetStreamApiError && err.code === JetStreamApiCodes.ConsumerNotFound;

/** First sequence a checkpoint does not cover: its first unacknowledged one, or the one after all it read. */
export function replayFrom(pos: ConsumerPosition | undefined): number | undefined {
  return pos ? (pos.unacked[0] ?? pos.delivered + 1) : undefined;
}

export async function ensureConsumer(jsm: JetStreamManager, spec: ConsumerSpec, resumeFrom?: number): Promise<{ recreatedFromSeq?: number }> {
  const base: Partial<ConsumerConfig> = {
    durable_name: spec.durable,
    ack_policy: AckPolicy.Explicit,
    ack_wait: ACK_WAIT_NS,
    max_ack_pending: spec.maxAckPending ?? 200_000,
    ...(spec.filterSubject ? { filter_subject: spec.filterSubject } : {}),
  };
  const from = (seq: number | undefined): Partial<ConsumerConfig> => (seq === undefined ? { deliver_policy: DeliverPolicy.All } : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: seq });
  let info;
  try {
    info = await jsm.consumers.info(spec.stream, spec.durable);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.consumers.add(spec.stream, { ...base, ...from(resumeFrom) });
    return resumeFrom === undefined ? {} : { recreatedFromSeq: resumeFrom };
  }
  const floorNext = info.ack_floor.stream_seq + 1;
  const start = Math.min(floorNext, resumeFrom ?? floorNext);
  if (info.num_ack_pending === 0 && start === floorNext && info.config.filter_subject === spec.filterSubject) return {};
  await jsm.consumers.delete(spec.stream, spec.durable);
  await jsm.consumers.add(spec.stream, { ...base, ...from(start) });
  return { recreatedFromSeq: start };
}

/** Messages done, to acknowledge: reply subjects and their stream sequences, in the same order. */
export interface Done {
  replies: string[];
  seqs: number[];
}

/**
 * Acknowledgements are fire-and-forget: one sent while the connection is down, or while the
 * consumer's leader moves (its server killed), is lost, and the server holds the message as
 * unacknowledged until its ack wait (30 min) runs out — the fault suite saw 4 REQUESTS messages held
 * so after a server was killed, all their outputs stored. So this long after an acknowledgement the
 * consumer's ack floor is read (one consumer-info request for all that came due) and what lies
 * above it is sent once more (the server ignores a repeat). The floor has normally passed them all:
 * sending every acknowledgement twice, as this did before, doubled nats-server's acknowledgement
 * work on a fleet's stream for nothing.
 */
export const REACK_AFTER_MS = 10_000;

/**
 * The second look at acknowledgements (REACK_AFTER_MS): `sent(d)` records what was just sent and
 * sends again, at most one look at a time, what came due and lies above the ack floor. Where the
 * floor cannot be read (NATS away, the consumer gone), all that came due is sent again.
 */
export function createReacker(opts: { floor(): Promise<number>; send(reply: string): void; clock?: () => number }): { sent(d: Done): void; reacked(): number; looking(): Promise<void> } {
  const clock = opts.clock ?? Date.now;
  const batches: (Done & { atMs: number })[] = [];
  let look: Promise<void> | undefined;
  let reacks = 0;
  return {
    sent(d) {
      const now = clock();
      if (d.replies.length > 0) batches.push({ ...d, atMs: now });
      if (look || batches.length === 0 || now - batches[0]!.atMs < REACK_AFTER_MS) return;
      let n = 0;
      while (n < batches.length && now - batches[n]!.atMs >= REACK_AFTER_MS) n++;
      const due = batches.splice(0, n);
      look = opts
        .floor()
        .catch(() => 0)
        .then((floor) => {
          for (const b of due) {
            for (let i = 0; i < b.replies.length; i++) {
              if (b.seqs[i]! <= floor) continue;
              opts.send(b.replies[i]!);
              reacks++;
            }
          }
        })
        .finally(() => (look = undefined));
    },
    reacked: () => reacks,
    looking: () => look ?? Promise.resolve(),
  };
}

/** An input's hold on its message: `done()` once its contribution is in the outputs or the join's state. */
export interface Token {
  done(): void;
}

export interface BoundConsumer {
  readonly spec: ConsumerSpec;
  /** Highest stream sequence read, and the read ones not yet done (for the checkpoint). */
  position(): ConsumerPosition;
  /**
   * The messages done since the last call: `ack()` them once a checkpoint covering them is written.
   * Their reply subjects (and sequences), not the messages: a held JsMsg keeps its payload and parsed
   * delivery info alive until the checkpoint (tens of thousands on a backlog, each copied by every
   * young-generation collection meanwhile), and an acknowledgement needs only where to send it.
   */
  takeDone(): Done;
  /** Acknowledges them (a core publish each), and again later where the server did not take it (see `REACK_AFTER_MS`). */
  ack(done: Done): void;
  /** Acknowledgements sent a second time so far. */
  reacked(): number;
  /** Messages in the stream not yet read plus those read and not acknowledged. */
  pending(): Promise<number>;
  /** Times the consumer was found deleted and recreated. */
  recreated(): number;
  close(): Promise<void>;
}

/**
 * Reads a durable consumer into `handle`, from where `resume` (the partition's checkpoint) says.
 * A consumer deleted under it (an operator, a replica's handover) is recreated from the next
 * sequence and reading goes on: the analyzer never dies of it; each time is logged and counted.
 */
export async function bindConsumer(opts: {
  nc: NatsConnection;
  jsm: JetStreamManager;
  js: JetStreamClient;
  spec: ConsumerSpec;
  resume?: ConsumerPosition;
  /** May return a promise to pause reading until it settles (backpressure). */
  handle(m: JsMsg, token: Token): void | Promise<void>;
  log?: (line: string) => void;
  clock?: () => number;
}): Promise<BoundConsumer> {
  const { nc, jsm, js, spec } = opts;
  const log = opts.log ?? (() => {});
  const { recreatedFromSeq } = await ensureConsumer(jsm, spec, replayFrom(opts.resume));
  if (recreatedFromSeq !== undefined) log(`${spec.durable}: reading again from stream seq ${recreatedFromSeq}`);
  const coveredThrough = opts.resume?.delivered ?? 0;
  const coveredUnacked = new Set(opts.resume?.unacked ?? []);
  const outstanding = new Set<number>();
  let done: Done = { replies: [], seqs: [] };
  const reacker = createReacker({
    floor: async () => (await jsm.consumers.info(spec.stream, spec.durable)).ack_floor.stream_seq,
    send: (reply) => nc.publish(reply, ACK),
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  let delivered = opts.resume?.delivered ?? 0;
  let recreations = 0;
  let closed = false;
  let messages: ConsumerMessages | undefined;
  let lost = false;

  const recreate = async () => {
    for (;;) {
      try {
        await ensureConsumer(jsm, spec, delivered + 1);
        recreations++;
        log(`${spec.durable}: the consumer was deleted; recreated from stream seq ${delivered + 1}`);
        return;
      } catch (err) {
        log(`${spec.durable}: recreating the consumer failed, retrying in 1 s: ${errorMessage(err)}`);
        await new Promise((r) => setTimeout(r, 1000));
        if (closed) return;
      }
    }
  };
  /** Binding to the consumer failed for another reason than its absence (NATS unreachable): again in 1 s. */
  const bindFailed = async (err: unknown) => {
    log(`${spec.durable}: binding to the consumer failed, retrying in 1 s: ${errorMessage(err)}`);
    await new Promise((r) => setTimeout(r, 1000));
  };
  const read = async () => {
    while (!closed) {
      try {
        messages = await (await js.consumers.get(spec.stream, spec.durable)).consume({ max_messages: PULL_BATCH, expires: PULL_EXPIRES_MS });
      } catch (err) {
        // Reading must not end for good on a transient failure: the partition would stop silently.
        await (isNotFound(err) ? recreate() : bindFailed(err));
        continue;
      }
      const current = messages;
      void (async () => {
        for await (const s of current.status()) {
          if (s.type === "consumer_deleted" || s.type === "consumer_not_found") {
            lost = true;
            await current.close();
            return;
          }
        }
      })();
      for await (const m of current) {
        if (m.seq <= coveredThrough && !coveredUnacked.has(m.seq)) {
          m.ack(); // the checkpoint covers it: read and acknowledged before the restart
          continue;
        }
        if (m.seq > delivered) delivered = m.seq;
        outstanding.add(m.seq);
        let once = false;
        const wait = opts.handle(m, {
          done() {
            if (once) return;
            once = true;
            outstanding.delete(m.seq);
            done.replies.push(replyOf(m));
            done.seqs.push(m.seq);
          },
        });
        if (wait) await wait;
      }
      if (closed) return;
      if (lost) {
        lost = false;
        await recreate();
      }
    }
  };
  const reading = read().catch((err) => log(`${spec.durable}: reading stopped: ${errorMessage(err)}`));

  return {
    spec,
    position: () => ({ delivered, unacked: [...outstanding].sort((a, b) => a - b) }),
    takeDone() {
      const d = done;
      done = { replies: [], seqs: [] };
      return d;
    },
    async pending() {
      try {
        const ci = await jsm.consumers.info(spec.stream, spec.durable);
        return ci.num_pending + ci.num_ack_pending;
      } catch (err) {
        if (!isNotFound(err)) throw err;
        return 1; // gone: the reader recreates it; not idle meanwhile
      }
    },
    ack(d) {
      for (const r of d.replies) nc.publish(r, ACK);
      reacker.sent(d);
    },
    reacked: () => reacker.reacked(),
    recreated: () => recreations,
    async close() {
      closed = true;
      await messages?.close().catch(() => undefined);
      await reading;
    },
  };
}
