import { z } from "zod";
import type { NatsConnection, ServerInfo } from "@nats-io/nats-core";
import type { JetStreamManager, StreamInfo } from "@nats-io/jetstream";
import type { OptionSpec } from "./config.ts";
import { ConfigError, errorMessage } from "./errors.ts";

/**
 * How many copies JetStream keeps of every stream and KV bucket the services create. One number
 * for all of them: a bucket that is R1 while the streams are R3 loses the join state, the emitted
 * store or the leases with the one server that held it.
 *
 * Default: the cluster's size, at most 3, when the server we are connected to is clustered; 1 on
 * a single server. What nats-server 2.9.10 tells a client (checked against infra/local-cluster.ts):
 * the INFO of a clustered server carries `cluster` (its name) and `connect_urls` (the client URLs
 * of every server in the cluster, itself included); a single server sends neither. JetStream's
 * account info ($JS.API.INFO) says nothing about the cluster, and the meta group's size (/jsz,
 * $SYS) needs the monitoring port or the system account, which services do not have.
 *
 * Limits of counting `connect_urls`: a server with `no_advertise` sends none (then we fall back to
 * 1 and say so: pass --replicas); a server bound to 0.0.0.0 advertises each of its interface
 * addresses, and a cluster may hold servers without JetStream, so the count can be high; the cap
 * at 3 hides this on clusters of 3 or more, and a smaller one needs --replicas.
 */
export const MAX_DEFAULT_REPLICAS = 3;
/** JetStream's own limit. */
export const MAX_REPLICAS = 5;

/** `--replicas N` / JOULESTREAM_REPLICAS, for every command that creates streams or buckets. */
export const replicasOptions: Record<string, OptionSpec> = {
  replicas: {
    type: "string",
    arg: "N",
    env: "JOULESTREAM_REPLICAS",
    description: `copies of every JetStream stream and KV bucket this command creates (1-${MAX_REPLICAS}); an existing one with fewer is scaled up where this identity may`,
    defaultText: `the cluster's size, at most ${MAX_DEFAULT_REPLICAS}; 1 on a single server`,
  },
};

/** The zod field of `--replicas`; extend a command's schema with it. */
export const replicasConfig = z.object({ replicas: z.coerce.number().int().min(1).max(MAX_REPLICAS).optional() });

/**
 * Servers in the cluster of the server that sent `info`: 1 when it is not clustered, undefined
 * when it is but does not advertise its peers. Pure: the INFO is the input.
 */
export function clusterSize(info: Pick<ServerInfo, "cluster" | "connect_urls"> | undefined): number | undefined {
  if (!info?.cluster) return 1;
  const urls = new Set(info.connect_urls ?? []);
  return urls.size > 0 ? urls.size : undefined;
}

/** The default replica count for a server's INFO (see the file comment). */
export function defaultReplicas(info: Pick<ServerInfo, "cluster" | "connect_urls"> | undefined): number {
  return Math.min(MAX_DEFAULT_REPLICAS, clusterSize(info) ?? 1);
}

/** A JetStreamManager made by `jetstreamManager(nc)` carries its connection (nats.js v3). */
type Connected = NatsConnection | JetStreamManager;

/**
 * The replica count to create streams and buckets with: `requested` when given (a flag or env),
 * else the default of the server the connection is on. Throws ConfigError for a count JetStream
 * cannot have.
 */
export function resolveReplicas(conn: Connected, requested?: number, opts: { log?: (line: string) => void } = {}): number {
  if (requested !== undefined) {
    if (!Number.isInteger(requested) || requested < 1 || requested > MAX_REPLICAS) throw new ConfigError("--replicas", `${requested}: must be an integer from 1 to ${MAX_REPLICAS}`);
    const info = connectionOf(conn)?.info;
    // nats-server 2.9 takes R3 outside a cluster, reports it, and keeps one copy.
    if (requested > 1 && info && !info.cluster) opts.log?.(`server ${info.server_name} is not clustered: --replicas ${requested} keeps one copy`);
    return requested;
  }
  const info = connectionOf(conn)?.info;
  if (info?.cluster && clusterSize(info) === undefined) {
    opts.log?.(`server ${info.server_name} is in cluster ${info.cluster} but does not advertise its peers (no_advertise?): streams and buckets are created R1; pass --replicas (JOULESTREAM_REPLICAS)`);
  }
  return defaultReplicas(info);
}

function connectionOf(conn: Connected): NatsConnection | undefined {
  if ("info" in conn) return conn;
  // JetStreamManagerImpl keeps the connection it was made from; the interface does not name it.
  const nc = (conn as { nc?: unknown }).nc;
  return nc && typeof nc === "object" && "info" in nc ? (nc as NatsConnection) : undefined;
}

export type ReplicasOutcome = "created" | "kept" | "scaled" | "short";

/**
 * An existing stream (or a KV bucket's stream) with fewer replicas than `replicas` is scaled up,
 * when this identity may (an agent's node identity may only read: infra/nats/auth.ts); if not, it
 * is left as it is and the log says so. One with more is left alone: an operator chose it.
 */
export async function scaleUp(jsm: JetStreamManager, info: StreamInfo, replicas: number, log: (line: string) => void = () => {}): Promise<{ outcome: ReplicasOutcome; replicas: number }> {
  const have = info.config.num_replicas ?? 1;
  if (have >= replicas) return { outcome: "kept", replicas: have };
  let reason: string;
  try {
    const now = (await jsm.streams.update(info.config.name, { ...info.config, num_replicas: replicas })).config.num_replicas;
    if (now >= replicas) {
      log(`${info.config.name}: scaled from ${have} to ${now} replicas`);
      await untilLeader(jsm, info.config.name, log);
      return { outcome: "scaled", replicas: now };
    }
    // A server outside a cluster takes the update and keeps one copy.
    reason = `the server keeps ${now}`;
  } catch (err) {
    reason = errorMessage(err);
  }
  log(`WARNING: ${info.config.name} has ${have} replica(s), fewer than ${replicas}, and could not be scaled up (${reason}); it stays so until an operator scales it (nats stream edit ${info.config.name} --replicas ${replicas})`);
  return { outcome: "short", replicas: have };
}

/** A scaled stream elects its leader again (about 1 s on 2.9.10); requests meanwhile get no reply. */
const LEADER_WAIT_MS = 10_000;

async function untilLeader(jsm: JetStreamManager, name: string, log: (line: string) => void): Promise<void> {
  const deadline = Date.now() + LEADER_WAIT_MS;
  while (Date.now() < deadline) {
    if ((await jsm.streams.info(name)).cluster?.leader) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  log(`WARNING: ${name} has no leader ${LEADER_WAIT_MS} ms after it was scaled; writes wait until it has one`);
}

/** JetStream API 10005 "no suitable peers for placement": more replicas than servers to hold them. */
export const NO_SUITABLE_PEERS = 10005;

/** The error a create gets when the cluster cannot hold `replicas` copies, made to name the flag. */
export function placementError(what: string, replicas: number, cause: unknown): ConfigError {
  return new ConfigError("--replicas", `${what}: the cluster cannot place ${replicas} replicas (${errorMessage(cause)}); are all its JetStream servers up? Pass --replicas (JOULESTREAM_REPLICAS) no larger than the servers that are`, cause);
}
