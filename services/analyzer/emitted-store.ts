import { createHash } from "node:crypto";
import type { NatsConnection } from "@nats-io/nats-core";
import { Kvm, type KV } from "@nats-io/kv";

/**
 * Remembers which requests have been stored, across analyzer restarts (a NATS KV bucket).
 *
 * Why: a request's inputs are acknowledged when it is emitted, but a window it shared with a
 * longer request stays unacknowledged until that one finishes. After a crash that window comes
 * back, and the short request would be re-assembled from that one window alone — without its start
 * and end — and stored again, incomplete, over the right record. The analyzer checks here first.
 */
export interface EmittedStore {
  has(node: string, requestId: string): Promise<boolean>;
  add(node: string, requestId: string): Promise<void>;
}

export const EMITTED_BUCKET = "joulestream-analyzer-emitted";

const key = (node: string, requestId: string) => `${node}.${createHash("sha1").update(requestId).digest("hex")}`;

/** One bucket per analyzer group (`name`): two independent analyzers each store every request. */
export async function openEmittedStore(nc: NatsConnection, group: string, opts: { ttlMs?: number; replicas?: number } = {}): Promise<EmittedStore> {
  const kv: KV = await new Kvm(nc).create(`${EMITTED_BUCKET}-${group}`, { history: 1, ttl: opts.ttlMs ?? 24 * 3600_000, replicas: opts.replicas ?? 1 });
  return {
    async has(node, requestId) {
      const e = await kv.get(key(node, requestId));
      return e !== null && e.operation === "PUT";
    },
    async add(node, requestId) {
      await kv.put(key(node, requestId), new Uint8Array([1]));
    },
  };
}
