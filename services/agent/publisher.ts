import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { encode } from "../../shared/mod.ts";
import { createSpool, type SpoolOptions, type SpoolStats } from "./spool.ts";

/**
 * Publishes to JetStream in order, off the caller's path: `publish` only enqueues into the spool
 * (memory, then disk), so the request tap never waits on NATS. What is queued goes out as one
 * pipelined batch (up to `window` publishes in flight, written together, acks read together), so a
 * request's events cost one round trip, not one each. Records leave the spool only up to the first
 * failed publish; from there the batch is retried with backoff, and the Nats-Msg-Id header makes a
 * retry of a publish that did land a no-op on the server, so an outage costs neither order nor
 * duplicates. (On one connection the publishes after a failed one fail too; the order could only
 * differ if the server refused one publish and stored the next.)
 */
export interface PublisherStats extends SpoolStats {
  queued: number;
  published: number;
  retries: number;
  lastError?: string;
}

export interface Publisher {
  publish(subject: string, msg: { msgId: string }): void;
  /** Resolves true when everything queued so far is published, false after `timeoutMs`. */
  flush(timeoutMs?: number): Promise<boolean>;
  stats(): PublisherStats;
  /** Stops publishing; what is still queued stays on disk for the next run (with a spool dir). */
  close(): Promise<void>;
}

export interface PublisherOptions extends SpoolOptions {
  publishTimeoutMs?: number;
  /** Most publishes in flight at once (default 256). */
  window?: number;
  /**
   * How long a message may wait for others to join its batch (default 50 ms), like Kafka's
   * linger.ms: the broker is woken a few times a second, not on every request event, which keeps
   * its work (and ours) out of the way of the requests the tap is relaying.
   */
  lingerMs?: number;
}

export function createPublisher(nc: NatsConnection, opts: PublisherOptions = {}): Publisher {
  const js: JetStreamClient = jetstream(nc, { timeout: opts.publishTimeoutMs ?? 5000 });
  const spool = createSpool(opts);
  const stats = { published: 0, retries: 0, lastError: undefined as string | undefined };
  let pumping: Promise<void> | undefined;
  let lingering: NodeJS.Timeout | undefined;
  const lingerMs = opts.lingerMs ?? 50;
  let closed = false;
  const idleWaiters: (() => void)[] = [];
  let wake: (() => void) | undefined;

  const window = Math.max(1, opts.window ?? 256);
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
      if (failed < 0) {
        backoffMs = 100;
        continue;
      }
      stats.retries++;
      stats.lastError = ((results[failed] as PromiseRejectedResult).reason as Error).message;
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, backoffMs).unref();
      });
      backoffMs = Math.min(backoffMs * 2, 2000);
    }
    pumping = undefined;
    if (spool.size === 0) idleWaiters.splice(0).forEach((w) => w());
  };

  const startPump = () => {
    clearTimeout(lingering);
    lingering = undefined;
    pumping ??= pump();
  };

  // After a reconnect, retry at once instead of waiting out the backoff.
  void (async () => {
    for await (const s of nc.status()) if (s.type === "reconnect") wake?.();
  })();

  return {
    publish(subject, msg) {
      if (closed) return;
      spool.push({ subject, msgId: msg.msgId, data: encode(msg) });
      if (pumping || lingering) return;
      if (lingerMs <= 0) startPump();
      else lingering = setTimeout(startPump, lingerMs).unref();
    },
    async flush(timeoutMs = 10_000) {
      if (spool.size === 0 && !pumping) return true;
      startPump();
      return await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), timeoutMs);
        idleWaiters.push(() => {
          clearTimeout(t);
          resolve(true);
        });
      });
    },
    stats: () => ({ ...spool.stats(), queued: spool.size, published: stats.published, retries: stats.retries, ...(stats.lastError ? { lastError: stats.lastError } : {}) }),
    async close() {
      closed = true;
      clearTimeout(lingering);
      wake?.();
      await pumping;
      await spool.close();
    },
  };
}
