import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { PermanentError, errorMessage } from "../shared/errors.ts";
import { stopAll } from "../shared/lifecycle.ts";
import { ALL_STREAMS, ensureStreams, type EnsuredStream } from "../shared/streams.ts";
import { ensureBinaries } from "./binaries.ts";
import { createDatabase, type InfluxNode } from "./influx-node.ts";
import { startLocalCluster, type LocalCluster } from "./local-cluster.ts";
import { DEFAULT_DATABASE, assertLoopbackOnly, stackLifetime, startInflux } from "./local-stack.ts";

/**
 * `joulestream up --cluster`: the 3-node NATS JetStream cluster of infra/local-cluster.ts and one
 * InfluxDB, all on 127.0.0.1, with every stream created at the cluster's default replicas (R3,
 * shared/replicas.ts): what a fleet runs, on a laptop, to try replication and failover.
 */
export interface LocalClusterStackOptions {
  /** Configs, logs and data (kept). Default: a new directory under os.tmpdir(), removed on stop. */
  runDir?: string;
  /** Clients on 4231-4233, routes 6231-6233, monitoring 8231-8233 (local-cluster.ts). */
  fixedPorts?: boolean;
  /** InfluxDB HTTP port on 127.0.0.1; 0 or unset = a free port. */
  influxPort?: number;
  database?: string;
  install?: boolean;
  log?: (line: string) => void;
}

export interface LocalClusterStack {
  /** Client URLs of the three nodes. */
  natsUrls: string[];
  /** Comma-separated, as --nats and JOULESTREAM_NATS_URL take them. */
  natsUrl: string;
  natsMonitorUrls: string[];
  influxUrl: string;
  database: string;
  runDir: string;
  /** The streams as they were created (or found). */
  streams: EnsuredStream[];
  pids: { nats: number[]; influxd: number };
  /** Idempotent: stops the four servers, removes a temporary run directory. */
  stop(): Promise<void>;
  /** Resolves after stop() with undefined, or with an error once a server exited by itself (the others are then stopped). */
  closed(): Promise<Error | undefined>;
}

export async function startLocalClusterStack(opts: LocalClusterStackOptions = {}): Promise<LocalClusterStack> {
  const log = opts.log ?? (() => {});
  const database = opts.database ?? DEFAULT_DATABASE;
  const install = opts.install ?? true;
  const bins = await ensureBinaries(["nats-server", "influxd"], { install, log });
  const ownDir = opts.runDir === undefined;
  const runDir = ownDir ? await mkdtemp(join(tmpdir(), "joulestream-cluster-stack-")) : resolve(opts.runDir!);
  if (/["\\\n]/.test(runDir)) throw new PermanentError("CONFIG", `run dir ${JSON.stringify(runDir)}: must not contain quotes, backslashes or newlines`);
  await mkdir(runDir, { recursive: true });

  let cluster: LocalCluster | undefined;
  let influx: InfluxNode | undefined;
  const cleanup = async () => {
    await stopAll([async () => await cluster?.stop(), async () => await influx?.stop()]);
    if (ownDir) await rm(runDir, { recursive: true, force: true });
  };
  let streams: EnsuredStream[];
  try {
    const [c, i] = await Promise.allSettled([
      startLocalCluster({ runDir: join(runDir, "nats"), fixedPorts: opts.fixedPorts ?? false, install, log }),
      startInflux(bins.influxd, runDir, opts.influxPort),
    ]);
    if (c.status === "fulfilled") cluster = c.value;
    if (i.status === "fulfilled") influx = i.value;
    if (c.status === "rejected") throw c.reason;
    if (i.status === "rejected") throw i.reason;
    log(`influxd pid ${influx!.proc.pid} at ${influx!.url} (log ${influx!.proc.logPath})`);
    await assertLoopbackOnly([...cluster!.nodes.map((n) => n.proc.pid), influx!.proc.pid]);
    streams = await applyStreams(cluster!.urls, log);
    await createDatabase(influx!.url, database);
  } catch (err) {
    await cleanup().catch((cleanupErr: unknown) => log(`cleanup after failed start: ${errorMessage(cleanupErr)}`));
    throw err;
  }

  const { stop, closed } = stackLifetime([...cluster!.nodes.map((n) => n.proc), influx!.proc], cleanup, "the NATS cluster and influxd", log);
  return {
    natsUrls: cluster!.urls,
    natsUrl: cluster!.servers,
    natsMonitorUrls: cluster!.nodes.map((n) => n.monitorUrl),
    influxUrl: influx!.url,
    database,
    runDir,
    streams,
    pids: { nats: cluster!.nodes.map((n) => n.proc.pid), influxd: influx!.proc.pid },
    stop,
    closed: () => closed,
  };
}

/** Every stream, at the cluster's default replicas: what the services would create. */
async function applyStreams(urls: string[], log: (line: string) => void): Promise<EnsuredStream[]> {
  const nc = await connect({ servers: urls, name: "joulestream-local-cluster-stack", maxReconnectAttempts: 0 });
  try {
    return await ensureStreams(await jetstreamManager(nc), ALL_STREAMS, { log });
  } finally {
    await nc.close();
  }
}
