import type { NatsConnection } from "@nats-io/nats-core";
import { JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import { Kvm, type KV, type KvOptions } from "@nats-io/kv";
import { NO_SUITABLE_PEERS, placementError, resolveReplicas, scaleUp } from "./replicas.ts";

export interface BucketReplication {
  /** Replicas; default: the server's (resolveReplicas), the same count the streams get. */
  replicas?: number;
  /** Where a bucket that stays short of its replicas is reported. */
  log?: (line: string) => void;
}

/**
 * Opens a KV bucket, creating it when missing, with the replicas every stream gets: the one way
 * services make buckets, so none is left R1 on a cluster. An existing bucket keeps its
 * configuration, except that one with fewer replicas than asked is scaled up where this identity
 * may (as ensureStreams does for streams).
 */
export async function openBucket(nc: NatsConnection, name: string, opts: Partial<Omit<KvOptions, "replicas">> = {}, replication: BucketReplication = {}): Promise<KV> {
  const replicas = resolveReplicas(nc, replication.replicas, replication);
  let kv: KV;
  try {
    kv = await new Kvm(nc).create(name, { ...opts, replicas });
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === NO_SUITABLE_PEERS) throw placementError(`KV bucket ${name}`, replicas, err);
    throw err;
  }
  const status = await kv.status();
  if (status.replicas < replicas) await scaleUp(await jetstreamManager(nc), status.streamInfo, replicas, replication.log);
  return kv;
}
