import { createHash } from "node:crypto";
import type { NatsConnection } from "@nats-io/nats-core";
import type { KV } from "@nats-io/kv";
import { decode, encode, openBucket, type LoadResult, type RequestEnergy } from "../../shared/mod.ts";

/**
 * Joins the load generator's client-side view of a request (LOAD) with its energy (ENERGY), by
 * request id, whichever comes first and on whichever replica: both sides are parked in a KV bucket
 * (put first, then look for the other, so of two racing sides at least one sees the other; a join
 * written twice is the same point twice).
 */
export interface Slo {
  ttftMs?: number;
  tpotMs?: number;
}

export interface JoinedRequest {
  energy: RequestEnergy;
  load: LoadResult;
  /** Both SLO targets met (an absent target counts as met); false for failed requests. */
  sloMet: boolean;
}

export function meetsSlo(load: LoadResult, slo: Slo): boolean {
  if (load.status !== "ok") return false;
  if (slo.ttftMs !== undefined && (load.ttftMs === undefined || load.ttftMs > slo.ttftMs)) return false;
  if (slo.tpotMs !== undefined && load.tpotMs !== undefined && load.tpotMs > slo.tpotMs) return false;
  return true;
}

export interface LoadJoin {
  addLoad(load: LoadResult): Promise<JoinedRequest | undefined>;
  addEnergy(energy: RequestEnergy): Promise<JoinedRequest | undefined>;
}

export const JOIN_BUCKET = "joulestream-analyzer-join";
const h = (requestId: string) => createHash("sha1").update(requestId).digest("hex");

export async function openLoadJoin(nc: NatsConnection, group: string, slo: Slo, opts: { ttlMs?: number; replicas?: number; log?: (line: string) => void } = {}): Promise<LoadJoin> {
  const kv: KV = await openBucket(nc, `${JOIN_BUCKET}-${group}`, { history: 1, ttl: opts.ttlMs ?? 6 * 3600_000 }, { ...(opts.replicas !== undefined ? { replicas: opts.replicas } : {}), ...(opts.log ? { log: opts.log } : {}) });
  const get = async <T>(key: string): Promise<T | undefined> => {
    const e = await kv.get(key);
    return e && e.operation === "PUT" ? (decode(e.value) as T) : undefined;
  };
  return {
    async addLoad(load) {
      const k = h(load.requestId);
      await kv.put(`l.${k}`, encode(load));
      const energy = await get<RequestEnergy>(`e.${k}`);
      return energy ? { energy, load, sloMet: meetsSlo(load, slo) } : undefined;
    },
    async addEnergy(energy) {
      const k = h(energy.requestId);
      await kv.put(`e.${k}`, encode(energy));
      const load = await get<LoadResult>(`l.${k}`);
      return load ? { energy, load, sloMet: meetsSlo(load, slo) } : undefined;
    },
  };
}
