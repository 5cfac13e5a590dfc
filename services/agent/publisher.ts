import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { encode } from "../../shared/mod.ts";

/**
 * Publishes to JetStream in order, off the caller's path: `publish` only enqueues, so the request
 * tap never waits on NATS. One publish in flight; a failed publish is retried with backoff and
 * keeps its place (order is preserved); the Nats-Msg-Id header makes a retry that did land a no-op
 * on the server. The queue is bounded: beyond `maxQueued` the oldest message is dropped and counted.
 */
export interface PublisherStats {
  queued: number;
  published: number;
  dropped: number;
  retries: number;
}

export interface Publisher {
  publish(subject: string, msg: { msgId: string }): void;
  /** Resolves when everything queued so far is published (or `timeoutMs` passes). */
  flush(timeoutMs?: number): Promise<boolean>;
  stats(): PublisherStats;
  close(): Promise<void>;
}

export function createPublisher(nc: NatsConnection, opts: { maxQueued?: number; publishTimeoutMs?: number } = {}): Publisher {
  const js: JetStreamClient = jetstream(nc, { timeout: opts.publishTimeoutMs ?? 5000 });
  const maxQueued = opts.maxQueued ?? 100_000;
  const queue: { subject: string; data: Uint8Array; msgId: string }[] = [];
  const stats: PublisherStats = { queued: 0, published: 0, dropped: 0, retries: 0 };
  let pumping: Promise<void> | undefined;
  let closed = false;
  const idleWaiters: (() => void)[] = [];

  const pump = async () => {
    let backoffMs = 100;
    while (queue.length > 0 && !closed) {
      const head = queue[0]!;
      try {
        await js.publish(head.subject, head.data, { msgID: head.msgId });
        queue.shift();
        stats.published++;
        backoffMs = 100;
      } catch {
        stats.retries++;
        await new Promise((r) => setTimeout(r, backoffMs).unref());
        backoffMs = Math.min(backoffMs * 2, 5000);
      }
    }
    pumping = undefined;
    if (queue.length === 0) idleWaiters.splice(0).forEach((w) => w());
  };

  return {
    publish(subject, msg) {
      if (closed) return;
      if (queue.length >= maxQueued) {
        queue.splice(1, 1); // keep the head: it may be in flight
        stats.dropped++;
      }
      queue.push({ subject, data: encode(msg), msgId: msg.msgId });
      stats.queued++;
      pumping ??= pump();
    },
    async flush(timeoutMs = 10_000) {
      if (queue.length === 0) return true;
      return await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), timeoutMs);
        idleWaiters.push(() => {
          clearTimeout(t);
          resolve(true);
        });
      });
    },
    stats: () => ({ ...stats, queued: queue.length }),
    async close() {
      closed = true;
      await pumping;
    },
  };
}
