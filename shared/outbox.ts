import { InvalidArgumentError, PermissionViolationError, type NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { encode, encodeWithEncodedArray } from "./codec.ts";
import { errorMessage } from "./errors.ts";
import { createSpool, type SpoolOptions, type SpoolStats } from "./spool.ts";

/**
 * An outbox: publishes to JetStream in order, off the caller's path. `publish` only enqueues into
 * the spool (memory, then disk), so the caller (the agent's request tap, the load generator's
 * runner) never waits on NATS, and a broker outage of minutes loses nothing. What is queued goes out as one
 * pipelined batch (up to `window` publishes in flight, written together, acks read together), so a
 * request's events cost one round trip, not one each. Records leave the spool only up to the first
 * failed publish; from there the batch is retried with backoff, and the Nats-Msg-Id header makes a
 * retry of a publish that did land a no-op on the server, so an outage costs neither order nor
 * duplicates. (On one connection the publishes after a failed one fail too; the order could only
 * differ if the server refused one publish and stored the next.)
 *
 * On a batched subject (REQUESTS) the messages of one linger are sealed into one message before
 * they enter the spool: one publish, one ack, one spool record for a few hundred request events.
 * A batch is sealed once, so a retry re-publishes the same bytes under the same Nats-Msg-Id.
 */
export interface OutboxStats extends SpoolStats {
  queued: number;
  published: number;
  /** Of `published`, those the server acknowledged as duplicates of a msgId it had (a republish after a lost ack, a re-run). */
  duplicates: number;
  retries: number;
  lastError?: string;
}

export interface Outbox {
  publish(subject: string, msg: { msgId: string }): void;
  /** Resolves true when everything queued so far is published, false after `timeoutMs`. */
  flush(timeoutMs?: number): Promise<boolean>;
  stats(): OutboxStats;
  /** Messages queued, those in segments an earlier run left included (see Spool.countQueued). */
  countQueued(): Promise<number>;
  /** Stops publishing; what is still queued stays on disk for the next run (with a spool dir). */
  close(): Promise<void>;
}

export interface OutboxOptions extends SpoolOptions {
  publishTimeoutMs?: number;
  /** Most publishes in flight at once (default 256). */
  window?: number;
  /**
   * How long a message may wait for others to join its batch (default 50 ms), like Kafka's
   * linger.ms: the broker is woken a few times a second, not on every request event, which keeps
   * its work (and ours) out of the way of the requests the tap is relaying.
   */
  lingerMs?: number;
  /** Subjects whose messages of one linger go out as one message (see BatchedSubject). */
  batched?: BatchedSubject[];
  /**
   * Whether a subject is this process's own (the agent: its node's subjects). A record on a subject
   * not its own that the server refuses (a spool left by a run under another node id) is dropped,
   * counted; one on its own subjects is held and retried, so a permission fixed on the server loses
   * nothing. Default: no subject is its own (every refused record is dropped).
   */
  ownsSubject?: (subject: string) => boolean;
}

export interface BatchedSubject {
  subject: string;
  /** Most messages in one batch (default 512): a full batch is sealed at once. */
  maxMessages?: number;
  /** The envelope of the next batch (its msgId must be new); its messages go under `key`, last. */
  envelope(): { msgId: string };
  key: string;
}

/** A batched subject's messages not yet sealed, each encoded as it came. */
interface OpenBatch {
  spec: BatchedSubject;
  max: number;
  pending: Uint8Array[];
}

/**
 * What no retry can send, told by nats.js's error classes (never by a message's wording):
 * - too large: nats.js refuses a payload over the server's max_payload before sending it, with an
 *   InvalidArgumentError (used for other arguments too, hence the size check);
 * - forbidden: the server refuses the subject for this connection's user (e.g. a spool left by a
 *   run under another node id, whose records carry that node's subjects); the publish's request
 *   rejects with a RequestError whose cause is a PermissionViolationError on "publish".
 */
export function unsendableKind(err: unknown, bytes: number, maxPayload: number | undefined): "too_large" | "forbidden" | undefined {
  if (err instanceof InvalidArgumentError && bytes > (maxPayload ?? Number.POSITIVE_INFINITY)) return "too_large";
  const pv = err instanceof PermissionViolationError ? err : err instanceof Error && err.cause instanceof PermissionViolationError ? err.cause : undefined;
  return pv?.operation === "publish" ? "forbidden" : undefined;
}

/** Largest batch sealed as one message; a larger one is split (the server's default max_payload is 1 MiB). */
export const MAX_BATCH_BYTES = 512 * 1024;

export function createOutbox(nc: NatsConnection, opts: OutboxOptions = {}): Outbox {
  const js: JetStreamClient = jetstream(nc, { timeout: opts.publishTimeoutMs ?? 5000 });
  const spool = createSpool(opts);
  const stats = { published: 0, duplicates: 0, retries: 0, unsendable: 0, lastError: undefined as string | undefined };
  let pumping: Promise<void> | undefined;
  let lingering: NodeJS.Timeout | undefined;
  const lingerMs = opts.lingerMs ?? 50;
  let closed = false;
  const idleWaiters: (() => void)[] = [];
  let wake: (() => void) | undefined;

  const window = Math.max(1, opts.window ?? 256);
  const batches = new Map<string, OpenBatch>((opts.batched ?? []).map((b) => [b.subject, { spec: b, max: Math.max(1, b.maxMessages ?? 512), pending: [] }]));
  const pendingCount = () => {
    let n = 0;
    for (const b of batches.values()) n += b.pending.length;
    return n;
  };
  const sealInto = (spec: BatchedSubject, msgs: Uint8Array[]) => {
    const split = () => {
      const half = msgs.length >> 1;
      sealInto(spec, msgs.slice(0, half));
      sealInto(spec, msgs.slice(half));
    };
    // Messages alone over the limit: split before copying them into a batch that would be thrown away.
    let bytes = 0;
    for (const m of msgs) bytes += m.length;
    if (bytes > MAX_BATCH_BYTES && msgs.length > 1) return split();
    const envelope = spec.envelope();
    const data = encodeWithEncodedArray(envelope, spec.key, msgs);
    // Over only by the envelope's few bytes: rare, and that envelope's msgId is simply not used.
    if (data.length > MAX_BATCH_BYTES && msgs.length > 1) split();
    else spool.push({ subject: spec.subject, msgId: envelope.msgId, data, messages: msgs.length });
  };
  /** Moves what waits on one batched subject into the spool. */
  const sealPending = (b: OpenBatch) => {
    const msgs = b.pending;
    b.pending = [];
    sealInto(b.spec, msgs);
  };
  /** Moves what waits on batched subjects into the spool, one message per subject. */
  const seal = () => {
    for (const b of batches.values()) if (b.pending.length > 0) sealPending(b);
  };
  const pump = async () => {
    let backoffMs = 100;
    for (;;) {
      if (closed) break;
      const batch = await spool.peekMany(window);
      if (batch.length === 0) break;
      const results = await Promise.allSettled(batch.map((rec) => js.publish(rec.subject, rec.data, { msgID: rec.msgId })));
      const failed = results.findIndex((r) => r.status === "rejected");
      const landed = failed < 0 ? batch.length : failed;
      spool.shift(landed);
      stats.published += landed;
      for (let i = 0; i < landed; i++) if ((results[i] as PromiseFulfilledResult<{ duplicate: boolean }>).value.duplicate) stats.duplicates++;
      if (failed < 0) {
        backoffMs = 100;
        continue;
      }
      const reason = (results[failed] as PromiseRejectedResult).reason as unknown;
      const rec = batch[failed]!;
      // What no retry can ever send must not hold up everything queued behind it.
      const kind = unsendableKind(reason, rec.data.length, nc.info?.max_payload);
      const unsendable =
        kind === "too_large"
          ? `dropped a message over the server's max payload (${rec.data.length} bytes, ${rec.subject})`
          : kind === "forbidden" && !(opts.ownsSubject?.(rec.subject) ?? false)
            ? `dropped a message this user may not publish (${rec.subject}): ${errorMessage(reason)}`
            : undefined;
      if (unsendable) {
        stats.unsendable += rec.messages ?? 1;
        stats.lastError = unsendable;
        spool.shift(1);
        continue;
      }
      stats.retries++;
      stats.lastError = errorMessage(reason);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, backoffMs).unref();
      });
      backoffMs = Math.min(backoffMs * 2, 2000);
      seal(); // an outage's events join the spool (and spill to disk) as they would have
    }
    pumping = undefined;
    if (pendingCount() > 0 && !closed) linger(); // what came in on batched subjects meanwhile
    else if (spool.empty) idleWaiters.splice(0).forEach((w) => w());
  };

  const startPump = () => {
    clearTimeout(lingering);
    lingering = undefined;
    seal();
    pumping ??= pump().catch((err: unknown) => {
      // Nothing in the pump should throw (the spool reads damaged files as far as they go), but an
      // unhandled rejection would end the process: record it and try again shortly.
      stats.lastError = `publishing stopped: ${errorMessage(err)}`;
      pumping = undefined;
      if (!closed) lingering ??= setTimeout(startPump, 1000).unref();
    });
  };
  const linger = () => {
    if (pumping || lingering) return;
    if (lingerMs <= 0) startPump();
    else lingering = setTimeout(startPump, lingerMs).unref();
  };

  // What an earlier run left in the spool dir goes out now, not at the first new message.
  if (!spool.empty) startPump();

  // After a reconnect, retry at once instead of waiting out the backoff.
  void (async () => {
    for await (const s of nc.status()) if (s.type === "reconnect") wake?.();
  })();

  return {
    publish(subject, msg) {
      if (closed) return;
      const b = batches.get(subject);
      if (!b) spool.push({ subject, msgId: msg.msgId, data: encode(msg) });
      // Encoded now (about a µs), so that sealing is a copy: encoding 500 events at once held the
      // event loop for 0.3 ms, during which the requests the tap relays waited.
      else if (b.pending.push(encode(msg)) >= b.max) sealPending(b);
      linger();
    },
    async flush(timeoutMs = 10_000) {
      // `empty`, not `size === 0`: segments an earlier run left are queued too, though not yet counted.
      if (spool.empty && pendingCount() === 0 && !pumping) return true;
      startPump();
      return await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), timeoutMs);
        idleWaiters.push(() => {
          clearTimeout(t);
          resolve(true);
        });
      });
    },
    stats: () => {
      const sp = spool.stats();
      // Dropped: by the spool when memory and disk are full, and here when no retry could send it.
      return { ...sp, dropped: sp.dropped + stats.unsendable, queued: spool.size, published: stats.published, duplicates: stats.duplicates, retries: stats.retries, ...(stats.lastError ? { lastError: stats.lastError } : {}) };
    },
    countQueued: async () => (await spool.countQueued()) + pendingCount(),
    async close() {
      closed = true;
      clearTimeout(lingering);
      seal(); // into the spool, which keeps it on disk (with a spool dir) for the next run
      wake?.();
      await pumping;
      await spool.close();
    },
  };
}
