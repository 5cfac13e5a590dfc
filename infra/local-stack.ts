import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { ALL_STREAMS, ensureStreams } from "../shared/streams.ts";
import { PermanentError, RetryableError, errorMessage } from "../shared/errors.ts";
import { createLifecycle, stopAll } from "../shared/lifecycle.ts";
import { ensureBinaries, findBinary as findBinaryIn, type ServerBinary } from "./binaries.ts";
import { createDatabase, startInfluxNode, type InfluxNode } from "./influx-node.ts";
import { startNatsNode, type NatsNode } from "./nats-node.ts";
import { freePorts, isProcessAlive, isLoopbackAddress, listeningSocketsOf } from "./ports.ts";
import { ServerStartError } from "./readiness.ts";
import { killRunning, serialStopGraceMs, type ExitInfo, type SupervisedProcess } from "./supervise.ts";
import { configString, renderInfraTemplate } from "./templates.ts";

export interface LocalStackOptions {
  /** Where configs, logs and data go. Default: a new directory under os.tmpdir(), removed on stop. */
  runDir?: string;
  /** NATS client port on 127.0.0.1; 0 or unset = a free port. */
  natsPort?: number;
  /** InfluxDB HTTP port on 127.0.0.1; 0 or unset = a free port. */
  influxPort?: number;
  /** Default "joulestream". */
  database?: string;
  log?: (line: string) => void;
  /** apt-get install nats-server/influxdb when missing and running as root (default true). */
  install?: boolean;
  /** Appended to the NATS server config (e.g. the analyzer's partition `mappings`). */
  natsExtraConfig?: string;
}

export interface LocalStack {
  natsUrl: string;
  influxUrl: string;
  database: string;
  runDir: string;
  /** NATS monitoring endpoint (/healthz, /jsz) on 127.0.0.1. */
  natsMonitorUrl: string;
  /** Server process ids (for operators and for tests checking that nothing is left behind). */
  pids: { nats: number; influxd: number };
  /** Every TCP port the stack listens on, all on 127.0.0.1. */
  ports: { nats: number; natsMonitor: number; influxHttp: number; influxRpc: number };
  /** Idempotent: SIGTERM, SIGKILL after a grace, waits for exit; leaves no process, no bound port. */
  stop(): Promise<void>;
  /**
   * Resolves once the stack has stopped: with undefined after `stop()`, or with an error when a
   * server exited by itself (the other one is then stopped too).
   */
  closed(): Promise<Error | undefined>;
}

export const DEFAULT_DATABASE = "joulestream";
/** Written to the run directory while the stack runs: URLs and pids, and a lock against a second stack. */
export const STACK_FILE = "stack.json";
/** A free port can be taken by someone else before the server binds it; then we pick again. */
const PORT_ATTEMPTS = 4;

export function findBinary(name: ServerBinary): Promise<string | undefined> {
  return findBinaryIn(name);
}

/**
 * Starts nats-server (JetStream) and influxd bound to 127.0.0.1, applies the stream definitions
 * and creates the database. Both servers die with this process, even if it is SIGKILLed (see
 * supervise.ts). On failure, whatever was started is stopped and the error carries the log tail.
 */
export async function startLocalStack(opts: LocalStackOptions = {}): Promise<LocalStack> {
  const log = opts.log ?? (() => {});
  const database = opts.database ?? DEFAULT_DATABASE;
  const bins = await ensureBinaries(["nats-server", "influxd"], { install: opts.install ?? true, log });

  const ownDir = opts.runDir === undefined;
  const runDir = ownDir ? await mkdtemp(join(tmpdir(), "joulestream-")) : resolve(opts.runDir!);
  if (/["\\\n]/.test(runDir)) throw new PermanentError("CONFIG", `run dir ${JSON.stringify(runDir)}: must not contain quotes, backslashes or newlines`);
  await mkdir(runDir, { recursive: true });
  await claimRunDir(runDir);

  let nats: NatsNode | undefined;
  let influx: InfluxNode | undefined;
  const cleanup = async () => {
    await stopAll([async () => await nats?.stop(), async () => await influx?.stop()]);
    await rm(join(runDir, STACK_FILE), { force: true });
    if (ownDir) await rm(runDir, { recursive: true, force: true });
  };
  try {
    // The two servers start concurrently; influxd is the slower one.
    const [n, i] = await Promise.allSettled([startNats(bins["nats-server"], runDir, opts.natsPort, opts.natsExtraConfig), startInflux(bins.influxd, runDir, opts.influxPort)]);
    if (n.status === "fulfilled") nats = n.value;
    if (i.status === "fulfilled") influx = i.value;
    if (n.status === "rejected") throw n.reason;
    if (i.status === "rejected") throw i.reason;
    log(`nats-server pid ${nats!.proc.pid} at ${nats!.url} (log ${nats!.proc.logPath})`);
    log(`influxd pid ${influx!.proc.pid} at ${influx!.url} (log ${influx!.proc.logPath})`);

    await assertLoopbackOnly([nats!.proc.pid, influx!.proc.pid]);
    await applyStreams(nats!.url);
    await createDatabase(influx!.url, database);
    await writeFile(join(runDir, STACK_FILE), JSON.stringify(stackFile(nats!, influx!, database, runDir), null, 2) + "\n");
  } catch (err) {
    await cleanup().catch((cleanupErr: unknown) => log(`cleanup after failed start: ${errorMessage(cleanupErr)}`));
    throw err;
  }

  const { stop, closed } = stackLifetime([nats!.proc, influx!.proc], cleanup, "nats-server and influxd", log);
  return { ...stackFile(nats!, influx!, database, runDir), stop, closed: () => closed };
}

/**
 * A stack's stop (once; later calls share it) and its end: `closed` resolves with undefined after
 * `stop()`, or with an error when one of its servers exited by itself (the others are then stopped).
 */
export function stackLifetime(procs: SupervisedProcess[], cleanup: () => Promise<void>, what: string, log: (line: string) => void): { stop: () => Promise<void>; closed: Promise<Error | undefined> } {
  // The servers stop one after the other, each within its own grace (SIGTERM, then SIGKILL): the
  // stack's grace is their sum. Past it, whatever still runs is killed.
  const life = createLifecycle({
    graceMs: serialStopGraceMs(procs.length),
    graceful: async () => {
      log(`stopping ${what}`);
      await cleanup();
    },
    force: (graceMs) => log(`${what}: not stopped within ${graceMs} ms; killed ${killRunning(procs).join(", ") || "none"}`),
  });
  const stop = async () => {
    await life.stop();
  };
  const closed = firstExit(procs).then(async ({ proc, info }) => {
    if (life.stopping) {
      await stop();
      return undefined;
    }
    const err = new RetryableError("UNAVAILABLE", `${proc.name} exited unexpectedly (${info.signal ?? `code ${info.code}`})\n--- last lines of ${proc.logPath} ---\n${proc.logTail(20)}`);
    log(err.message);
    await stop().catch((stopErr: unknown) => log(`stopping after ${proc.name} exited: ${errorMessage(stopErr)}`));
    return err;
  });
  return { stop, closed };
}

type StackInfo = Omit<LocalStack, "stop" | "closed">;

function stackFile(nats: NatsNode, influx: InfluxNode, database: string, runDir: string): StackInfo & { owner: number } {
  return {
    owner: process.pid,
    natsUrl: nats.url,
    influxUrl: influx.url,
    database,
    runDir,
    natsMonitorUrl: nats.monitorUrl,
    pids: { nats: nats.proc.pid, influxd: influx.proc.pid },
    ports: { nats: nats.clientPort, natsMonitor: nats.monitorPort, influxHttp: influx.httpPort, influxRpc: influx.rpcPort },
  };
}

/*
 * Ports we pick can be taken by someone else before the server binds them: then we pick again. A
 * port the caller chose cannot be picked again, so its failure is final.
 */
function startNats(binary: string, runDir: string, fixedPort: number | undefined, extraConfig = ""): Promise<NatsNode> {
  return withPortRetry(!fixedPort, async () => {
    const [clientPort, monitorPort] = fixedPort ? [fixedPort, ...(await freePorts(1))] : await freePorts(2);
    const storeDir = join(runDir, "nats", "jetstream");
    await mkdir(storeDir, { recursive: true });
    const configText =
      (await renderInfraTemplate("nats/single.conf", {
        SERVER_NAME: "joulestream-local",
        CLIENT_PORT: clientPort!,
        MONITOR_PORT: monitorPort!,
        STORE_DIR: configString(storeDir),
      })) + (extraConfig ? `\n${extraConfig}\n` : "");
    return await startNatsNode({ binary, name: "nats-server", configText, dir: runDir, clientPort: clientPort!, monitorPort: monitorPort! });
  });
}

export function startInflux(binary: string, runDir: string, fixedPort: number | undefined): Promise<InfluxNode> {
  return withPortRetry(!fixedPort, async () => {
    const [httpPort, rpcPort] = fixedPort ? [fixedPort, ...(await freePorts(1))] : await freePorts(2);
    return await startInfluxNode({ binary, dir: runDir, httpPort: httpPort!, rpcPort: rpcPort! });
  });
}

export function firstExit(procs: SupervisedProcess[]): Promise<{ proc: SupervisedProcess; info: ExitInfo }> {
  return Promise.race(procs.map((proc) => proc.exited.then((info) => ({ proc, info }))));
}

async function withPortRetry<T>(retry: boolean, start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (!retry || !(err instanceof ServerStartError && err.addressInUse) || attempt >= PORT_ATTEMPTS) throw err;
    }
  }
}

/** JetStream stream definitions (R1 on a single server); existing streams are left alone. */
async function applyStreams(url: string): Promise<void> {
  const nc = await connect({ servers: url, name: "joulestream-local-stack", maxReconnectAttempts: 0 });
  try {
    await ensureStreams(await jetstreamManager(nc), ALL_STREAMS, { replicas: 1 });
  } finally {
    await nc.close();
  }
}

/**
 * A safety net under the configs: if a server listens on anything but loopback (a config key this
 * version ignores, an INFLUXDB_* override), refuse to run rather than expose an open database.
 */
export async function assertLoopbackOnly(pids: number[]): Promise<void> {
  if (process.platform !== "linux") return;
  for (const pid of pids) {
    const exposed = (await listeningSocketsOf(pid)).filter((s) => !isLoopbackAddress(s.address));
    if (exposed.length > 0) {
      throw new PermanentError("CONFIG", `pid ${pid} listens on ${exposed.map((s) => `${s.address}:${s.port}`).join(", ")}; the local stack must bind 127.0.0.1 only`);
    }
  }
}

/**
 * One stack per run directory: a second one would share JetStream's store and InfluxDB's files.
 * A stack file left by a process that no longer runs (a crash) is taken over.
 */
async function claimRunDir(runDir: string): Promise<void> {
  let previous: { owner?: number; pids?: { nats?: number; influxd?: number } };
  try {
    previous = JSON.parse(await readFile(join(runDir, STACK_FILE), "utf8")) as typeof previous;
  } catch {
    return;
  }
  // The owner's pid alone could have been reused since a crash; its servers tell.
  const alive = async (pid: number | undefined) => pid !== undefined && (await isProcessAlive(pid));
  if ((await alive(previous.owner)) && ((await alive(previous.pids?.nats)) || (await alive(previous.pids?.influxd)))) {
    throw new PermanentError("CONFIG", `run dir ${runDir} is in use by a stack of pid ${previous.owner} (${join(runDir, STACK_FILE)})`);
  }
}
