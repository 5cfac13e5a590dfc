import { DiscardPolicy, JetStreamApiCodes, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig, type StreamInfo } from "@nats-io/jetstream";
import { NO_SUITABLE_PEERS, placementError, resolveReplicas, scaleUp, type ReplicasOutcome } from "./replicas.ts";

/**
 * JetStream stream definitions. Only server 2.9 features are used (Debian ships nats-server 2.9.10):
 * no subject transforms, no metadata, no compression.
 */
export type StreamName = "POWER" | "REQUESTS" | "WORK" | "LOAD" | "ENERGY" | "DEADLETTER" | "AUDIT";

const HOUR_NS = 3600 * 1e9;
/** Window in which the server drops a second publish of the same Nats-Msg-Id (agent retries, replays). */
export const DUPLICATE_WINDOW_NS = 10 * 60 * 1e9;

export interface StreamOptions {
  /** Replicas. streamConfig(): 1 when unset; ensureStreams(): the server's default (resolveReplicas). */
  replicas?: number;
  /** How long data is kept. */
  maxAgeHours?: number;
  storage?: "file" | "memory";
}

export const STREAM_SUBJECTS: Record<StreamName, string> = {
  POWER: "power.v1.>",
  REQUESTS: "req.v1.>",
  WORK: "work.v1.>",
  LOAD: "load.v1.>",
  ENERGY: "energy.v1.>",
  DEADLETTER: "dlq.v1.>",
  /** Clock and power-limit changes, who asked and what was restored. */
  AUDIT: "audit.v1.>",
};

export const ALL_STREAMS = Object.keys(STREAM_SUBJECTS) as StreamName[];

export function streamConfig(name: StreamName, opts: StreamOptions = {}): Partial<StreamConfig> & { name: string; subjects: string[] } {
  return {
    name,
    subjects: [STREAM_SUBJECTS[name]],
    retention: RetentionPolicy.Limits,
    storage: opts.storage === "memory" ? StorageType.Memory : StorageType.File,
    num_replicas: opts.replicas ?? 1,
    max_age: (opts.maxAgeHours ?? 7 * 24) * HOUR_NS,
    discard: DiscardPolicy.Old,
    duplicate_window: DUPLICATE_WINDOW_NS,
  };
}

export interface EnsureStreamsOptions extends StreamOptions {
  /** Where a stream that stays short of its replicas is reported. */
  log?: (line: string) => void;
}

export interface EnsuredStream {
  name: StreamName;
  /** Replicas the stream has now. */
  replicas: number;
  outcome: ReplicasOutcome;
}

/**
 * Creates the streams that do not exist yet, so every service can call this at start-up against
 * any server. Idempotent. Replicas: `opts.replicas`, else the server's default (resolveReplicas:
 * 3 on a cluster of 3 or more, 1 on a single server). An existing stream keeps its configuration
 * (an operator may have tuned it), except that one with fewer replicas than asked is scaled up
 * where this identity may, and reported where it may not.
 */
export async function ensureStreams(jsm: JetStreamManager, names: readonly StreamName[] = ALL_STREAMS, opts: EnsureStreamsOptions = {}): Promise<EnsuredStream[]> {
  const replicas = resolveReplicas(jsm, opts.replicas, opts);
  const ensured: EnsuredStream[] = [];
  for (const name of names) ensured.push(await ensureStream(jsm, name, { ...opts, replicas }));
  return ensured;
}

async function ensureStream(jsm: JetStreamManager, name: StreamName, opts: EnsureStreamsOptions & { replicas: number }): Promise<EnsuredStream> {
  let info: StreamInfo | undefined;
  try {
    info = await jsm.streams.info(name);
  } catch (err) {
    if (!isStreamNotFound(err)) throw err;
  }
  if (!info) {
    try {
      const created = await jsm.streams.add(streamConfig(name, opts));
      return { name, replicas: created.config.num_replicas, outcome: "created" };
    } catch (addErr) {
      if (addErr instanceof JetStreamApiError && addErr.code === NO_SUITABLE_PEERS) throw placementError(`stream ${name}`, opts.replicas, addErr);
      // Another service created it between our info and add: that is success.
      if (!isAlreadyInUse(addErr)) throw addErr;
      info = await jsm.streams.info(name);
    }
  }
  return { name, ...(await scaleUp(jsm, info, opts.replicas, opts.log)) };
}

function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
}

function isAlreadyInUse(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === STREAM_NAME_IN_USE;
}

/** JetStream API error 10058: stream name already in use with a different configuration. */
const STREAM_NAME_IN_USE = 10058;
