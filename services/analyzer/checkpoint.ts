import type { NatsConnection } from "@nats-io/nats-core";
import type { KV } from "@nats-io/kv";
import { decode, encode, openBucket } from "../../shared/mod.ts";
import type { JoinSnapshot } from "./join-state.ts";

/**
 * A partition's checkpoint: how far each of its consumers has been read, which of the messages
 * read are not acknowledged (those of windows still open), and the join's state. Written about
 * once a second, after the outputs of everything it covers are stored and before the messages it
 * covers are acknowledged; so after a crash the partition restarts from it and replays only what
 * it does not cover, and the outputs recomputed from that overwrite themselves (idempotent). This
 * replaces the per-request "already stored?" round trips the analyzer used to make.
 *
 * Stored in a KV bucket per analyzer group, in chunks (a fleet's open requests can pass NATS's
 * 1 MiB payload limit), under two alternating generations: a crash while writing one leaves the
 * previous one whole, and the head key names the generation to read.
 */
export interface ConsumerPosition {
  /** Highest stream sequence read. */
  delivered: number;
  /** Sequences ≤ delivered that are not acknowledged (ascending). */
  unacked: number[];
}

export interface Checkpoint {
  v: 1;
  writtenMs: number;
  consumers: Record<string, ConsumerPosition>;
  join: JoinSnapshot;
}

export interface CheckpointStore {
  load(partition: number): Promise<Checkpoint | undefined>;
  /** Resolves with the bytes written once the whole checkpoint is durable. */
  save(partition: number, ckpt: Checkpoint): Promise<number>;
}

export const CHECKPOINT_BUCKET = "joulestream-analyzer-state";
const CHUNK_BYTES = 512 * 1024;

interface Head {
  gen: 0 | 1;
  chunks: number;
  bytes: number;
}

/** Ascending numbers as deltas (small numbers are one byte in msgpack), and back. */
const deltas = (xs: readonly number[]) => xs.map((x, i) => (i === 0 ? x : x - xs[i - 1]!));
const undelta = (ds: readonly number[]) => {
  const out: number[] = [];
  let acc = 0;
  for (const d of ds) out.push((acc += d));
  return out;
};

export async function openCheckpointStore(nc: NatsConnection, group: string, opts: { replicas?: number; log?: (line: string) => void } = {}): Promise<CheckpointStore> {
  const kv: KV = await openBucket(nc, `${CHECKPOINT_BUCKET}-${group}`, { history: 1 }, { ...(opts.replicas !== undefined ? { replicas: opts.replicas } : {}), ...(opts.log ? { log: opts.log } : {}) });
  const heads = new Map<number, Head>();
  const headOf = async (p: number): Promise<Head | undefined> => {
    const e = await kv.get(`p${p}`);
    return e && e.operation === "PUT" ? (decode(e.value) as Head) : undefined;
  };
  return {
    async load(p) {
      const head = await headOf(p);
      if (!head) return undefined;
      heads.set(p, head);
      const parts: Uint8Array[] = [];
      for (let i = 0; i < head.chunks; i++) {
        const e = await kv.get(`p${p}.g${head.gen}.c${i}`);
        if (!e || e.operation !== "PUT") throw new Error(`checkpoint of partition ${p}: chunk ${i} of generation ${head.gen} is missing`);
        parts.push(e.value);
      }
      const bytes = new Uint8Array(head.bytes);
      let at = 0;
      for (const part of parts) bytes.set(part, (at += part.length) - part.length);
      const raw = decode(bytes) as Checkpoint & { consumers: Record<string, ConsumerPosition> };
      if (raw?.v !== 1) throw new Error(`checkpoint of partition ${p}: unknown version ${String(raw?.v)}`);
      for (const c of Object.values(raw.consumers)) c.unacked = undelta(c.unacked);
      return raw;
    },
    async save(p, ckpt) {
      const prev = heads.get(p) ?? (await headOf(p));
      const gen: 0 | 1 = prev?.gen === 0 ? 1 : 0;
      const wire = { ...ckpt, consumers: Object.fromEntries(Object.entries(ckpt.consumers).map(([k, c]) => [k, { delivered: c.delivered, unacked: deltas(c.unacked) }])) };
      const bytes = encode(wire);
      const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_BYTES));
      await Promise.all(Array.from({ length: chunks }, (_, i) => kv.put(`p${p}.g${gen}.c${i}`, bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES))));
      const head: Head = { gen, chunks, bytes: bytes.length };
      await kv.put(`p${p}`, encode(head));
      heads.set(p, head);
      return bytes.length;
    },
  };
}
