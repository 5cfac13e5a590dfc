import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { encode } from "../../shared/codec.ts";
import { errorMessage } from "../../shared/errors.ts";
import type { LoadResult } from "../../shared/messages/load.ts";
import { subjects } from "../../shared/subjects.ts";

/**
 * Publishes LOAD results to JetStream with Nats-Msg-Id = msgId, so a retried publish is dropped by
 * the server and every request is in the stream once. At most `maxPending` acks are awaited at a
 * time (a slow broker pushes back on the caller, the only buffer is bounded); a publish that fails
 * is retried `retries` times, then counted in `failed` and reported through `onError`.
 */
export interface LoadPublisher {
  publish(r: LoadResult): Promise<void>;
  /** Resolves when every publish so far has been acknowledged or has failed. */
  flush(): Promise<void>;
  stats(): { published: number; duplicates: number; failed: number; pending: number };
}

export function createLoadPublisher(nc: NatsConnection, opts: { maxPending?: number; retries?: number; timeoutMs?: number; onError?: (r: LoadResult, err: unknown) => void } = {}): LoadPublisher {
  const js: JetStreamClient = jetstream(nc, { timeout: opts.timeoutMs ?? 5000 });
  const maxPending = opts.maxPending ?? 256;
  const retries = opts.retries ?? 3;
  const pending = new Set<Promise<void>>();
  let published = 0, duplicates = 0, failed = 0;

  const once = async (r: LoadResult) => {
    for (let attempt = 0; ; attempt++) {
      try {
        const ack = await js.publish(subjects.load(r.runId), encode(r), { msgID: r.msgId });
        if (ack.duplicate) duplicates++;
        else published++;
        return;
      } catch (err) {
        if (attempt >= retries) {
          failed++;
          opts.onError?.(r, new Error(`publishing result ${r.msgId} failed after ${retries + 1} attempts: ${errorMessage(err)}`, { cause: err }));
          return;
        }
        await new Promise((res) => setTimeout(res, 100 * 2 ** attempt).unref());
      }
    }
  };
  return {
    async publish(r) {
      while (pending.size >= maxPending) await Promise.race(pending);
      const p: Promise<void> = once(r).finally(() => pending.delete(p));
      pending.add(p);
    },
    async flush() {
      while (pending.size > 0) await Promise.allSettled([...pending]);
    },
    stats: () => ({ published, duplicates, failed, pending: pending.size }),
  };
}
