import type { NatsConnection } from "@nats-io/nats-core";
import { createAckedPublisher, encode } from "../../shared/mod.ts";

/**
 * JetStream publishes with many acks outstanding: an emulated fleet publishes thousands of
 * messages a second, which one-at-a-time round trips cannot carry. At most `maxInFlight` publishes
 * wait for their ack; `publishAll` waits only while that many do (that is the backpressure).
 * Each message goes with its msgId as the Nats-Msg-Id header, so a retried publish that had landed
 * is dropped by the server (and counted as a duplicate here). Publishes are pipelined through one
 * inbox (shared/acked-publisher.ts), not `js.publish()`'s request each: the emulator publishes for a
 * whole fleet from one process, and in real time its own lateness was part of what the analyzer
 * bench measured.
 */
export interface PublishStats {
  published: number;
  duplicates: number;
  bytes: number;
  retries: number;
  failed: number;
  bySubjectPrefix: Record<string, number>;
}

export interface Outgoing {
  subject: string;
  msg: { msgId: string };
}

export interface PublishPipe {
  /**
   * Publishes in order, waiting only while the pipe is full, so a burst leaves in one socket write:
   * an `await` per message (of anything, undefined too) gave the client's flush a turn between
   * each, a write (syscall) per message, 11 % of the emulator's CPU at 900 nodes in real time.
   */
  publishAll(items: readonly Outgoing[]): Promise<void>;
  /** Resolves once every publish so far has been acknowledged (or has failed for good). */
  flush(): Promise<void>;
  stats(): PublishStats;
  /** The first publish that failed for good, if any. */
  error(): Error | undefined;
  /** Stops listening for acks (after `flush()`: nothing is waiting). */
  close(): void;
}

export const PUBLISH_ATTEMPTS = 5;

export function createPublishPipe(nc: NatsConnection, opts: { maxInFlight?: number; timeoutMs?: number } = {}): PublishPipe {
  const publisher = createAckedPublisher(nc, { timeoutMs: opts.timeoutMs ?? 10_000 });
  const max = opts.maxInFlight ?? 512;
  const stats: PublishStats = { published: 0, duplicates: 0, bytes: 0, retries: 0, failed: 0, bySubjectPrefix: {} };
  let inFlight = 0;
  let firstError: Error | undefined;
  const roomWaiters: (() => void)[] = [];
  const idleWaiters: (() => void)[] = [];

  const send = async (subject: string, data: Uint8Array, msgId: string) => {
    for (let attempt = 1; ; attempt++) {
      try {
        const ack = await publisher.publish(subject, data, msgId);
        if (ack.duplicate) stats.duplicates++;
        else stats.published++;
        stats.bytes += data.length;
        const prefix = subject.slice(0, subject.indexOf("."));
        stats.bySubjectPrefix[prefix] = (stats.bySubjectPrefix[prefix] ?? 0) + 1;
        return;
      } catch (err) {
        if (attempt >= PUBLISH_ATTEMPTS) {
          stats.failed++;
          firstError ??= err as Error;
          return;
        }
        stats.retries++;
        await new Promise((r) => setTimeout(r, 100 * attempt).unref());
      }
    }
  };

  return {
    async publishAll(items) {
      for (const { subject, msg } of items) {
        while (inFlight >= max) await new Promise<void>((r) => roomWaiters.push(r));
        inFlight++;
        void send(subject, encode(msg), msg.msgId).finally(() => {
          inFlight--;
          roomWaiters.shift()?.();
          if (inFlight === 0) idleWaiters.splice(0).forEach((w) => w());
        });
      }
    },
    async flush() {
      if (inFlight === 0) return;
      await new Promise<void>((r) => idleWaiters.push(r));
    },
    stats: () => ({ ...stats, bySubjectPrefix: { ...stats.bySubjectPrefix } }),
    error: () => firstError,
    close: () => publisher.close(),
  };
}
