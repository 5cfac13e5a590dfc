import type { NatsConnection } from "@nats-io/nats-core";
import type { KV } from "@nats-io/kv";
import { errorMessage, openBucket } from "../../shared/mod.ts";

/**
 * Partition ownership among analyzer replicas, by leases in a KV bucket whose entries expire
 * (`ttlMs`) unless renewed. Every replica registers itself, computes its fair share
 * ceil(partitions / live replicas), claims free partitions up to it (KV create: only one wins)
 * and releases extras. A replica that dies stops renewing; its leases expire and the others take
 * its partitions over. Each node's traffic maps to one partition (server-side subject mapping
 * `power.v1.<node>` → `power.v1.<node>.<partition(N,node)>`), so one replica owns a node's join.
 */
export interface PartitionLeases {
  /** Partitions this replica holds now. */
  owned(): number[];
  stop(): Promise<void>;
}

export const LEASE_BUCKET = "joulestream-analyzer-leases";

export async function startPartitionLeases(opts: {
  nc: NatsConnection;
  group: string;
  replicaId: string;
  partitions: number;
  ttlMs?: number;
  /** Replicas of the lease bucket (like the streams). */
  replicas?: number;
  onAcquire(p: number): Promise<void>;
  onRelease(p: number): Promise<void>;
  log?: (line: string) => void;
}): Promise<PartitionLeases> {
  const ttl = opts.ttlMs ?? 10_000;
  const kv: KV = await openBucket(opts.nc, `${LEASE_BUCKET}-${opts.group}`, { history: 1, ttl }, { ...(opts.replicas !== undefined ? { replicas: opts.replicas } : {}), ...(opts.log ? { log: opts.log } : {}) });
  const owned = new Map<number, number>(); // partition → revision
  let running = true;
  let busy: Promise<void> = Promise.resolve();

  const round = async () => {
    await kv.put(`member.${opts.replicaId}`, new TextEncoder().encode(String(Date.now())));
    const members = new Set<string>();
    const holders = new Map<number, string>();
    for await (const k of await kv.keys()) {
      if (k.startsWith("member.")) members.add(k.slice(7));
      else if (k.startsWith("p.")) {
        const e = await kv.get(k);
        if (e && e.operation === "PUT") holders.set(Number(k.slice(2)), new TextDecoder().decode(e.value));
      }
    }
    // Renew what we hold; a lease someone else holds now is lost.
    for (const [p, rev] of [...owned]) {
      try {
        owned.set(p, await kv.update(`p.${p}`, new TextEncoder().encode(opts.replicaId), rev));
      } catch {
        owned.delete(p);
        opts.log?.(`partition ${p}: lease lost`);
        await opts.onRelease(p);
      }
    }
    const share = Math.ceil(opts.partitions / Math.max(1, members.size));
    for (let p = 0; p < opts.partitions && owned.size < share; p++) {
      if (owned.has(p) || holders.has(p)) continue;
      let rev: number;
      try {
        rev = await kv.create(`p.${p}`, new TextEncoder().encode(opts.replicaId));
      } catch {
        continue; // another replica won it
      }
      // Owned (and so reported by owned()) only once its consumers are bound: a caller that waits
      // for the partition and then for the analyzer to be idle must not find it idle in between.
      try {
        await opts.onAcquire(p);
        owned.set(p, rev);
        opts.log?.(`partition ${p}: acquired`);
      } catch (err) {
        opts.log?.(`partition ${p}: taking it over failed, letting the lease go: ${errorMessage(err)}`);
        await opts.onRelease(p).catch(() => {});
        await kv.delete(`p.${p}`).catch(() => {});
      }
    }
    while (owned.size > share) {
      const p = Math.max(...owned.keys());
      owned.delete(p);
      await opts.onRelease(p);
      await kv.delete(`p.${p}`);
      opts.log?.(`partition ${p}: released (share ${share})`);
    }
  };

  const tick = () => {
    busy = busy.then(round).catch((err) => opts.log?.(`partition leases: ${errorMessage(err)}`));
  };
  tick();
  await busy;
  const timer = setInterval(() => running && tick(), Math.max(500, ttl / 4));
  timer.unref();
  return {
    owned: () => [...owned.keys()].sort((a, b) => a - b),
    async stop() {
      running = false;
      clearInterval(timer);
      await busy;
      for (const p of [...owned.keys()]) {
        await opts.onRelease(p);
        await kv.delete(`p.${p}`).catch((err) => opts.log?.(`partition ${p}: releasing the lease failed (it expires by itself): ${errorMessage(err)}`));
      }
      owned.clear();
      await kv.delete(`member.${opts.replicaId}`).catch((err) => opts.log?.(`leaving the group failed (the entry expires by itself): ${errorMessage(err)}`));
    },
  };
}

/** nats-server `mappings` that put each node's messages on one of N partitions (server 2.8+). */
export function partitionMappings(partitions: number): string {
  const lines = ["power.v1", "work.v1", "req.v1"].map((p) => `  "${p}.*": "${p}.{{wildcard(1)}}.{{partition(${partitions},1)}}"`);
  return `mappings = {\n${lines.join("\n")}\n}\n`;
}
