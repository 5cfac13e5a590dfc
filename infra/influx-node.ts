import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PermanentError, RetryableError, errorMessage } from "../shared/errors.ts";
import { LOOPBACK, ownsPorts } from "./ports.ts";
import { httpStatus, waitUntilReady } from "./readiness.ts";
import { spawnSupervised, type SupervisedProcess } from "./supervise.ts";
import { renderInfraTemplate } from "./templates.ts";

export interface InfluxNodeOptions {
  binary: string;
  /** Holds influxd.conf, influxd.log and the meta/, data/, wal/ directories under influxdb/. */
  dir: string;
  httpPort: number;
  /** Backup/restore RPC port, bound to 127.0.0.1 (1.x always opens it). */
  rpcPort: number;
  readyTimeoutMs?: number;
}

export interface InfluxNode {
  url: string;
  httpPort: number;
  rpcPort: number;
  proc: SupervisedProcess;
  stop(): Promise<void>;
}

export const INFLUX_READY_TIMEOUT_MS = 20_000;

/** Starts influxd 1.x from infra/influxdb/influxdb.conf and waits for GET /ping to answer 204. */
export async function startInfluxNode(o: InfluxNodeOptions): Promise<InfluxNode> {
  const dataDir = join(o.dir, "influxdb");
  await mkdir(dataDir, { recursive: true });
  const configPath = join(o.dir, "influxd.conf");
  await writeFile(configPath, await renderInfraTemplate("influxdb/influxdb.conf", { DATA_DIR: dataDir, HTTP_PORT: o.httpPort, RPC_PORT: o.rpcPort }));
  const proc = spawnSupervised({
    name: "influxd",
    command: o.binary,
    args: ["run", "-config", configPath],
    logPath: join(o.dir, "influxd.log"),
    env: withoutInfluxOverrides(process.env),
  });
  const url = `http://${LOOPBACK}:${o.httpPort}`;
  try {
    await waitUntilReady(proc, async () => (await ownsPorts(proc.pid, [o.httpPort])) && (await httpStatus(`${url}/ping`)) === 204, o.readyTimeoutMs ?? INFLUX_READY_TIMEOUT_MS);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return {
    url,
    httpPort: o.httpPort,
    rpcPort: o.rpcPort,
    proc,
    stop: async () => {
      await proc.stop();
    },
  };
}

/** influxd lets INFLUXDB_<SECTION>_<KEY> override the file, e.g. a stray INFLUXDB_HTTP_BIND_ADDRESS=:8086. */
function withoutInfluxOverrides(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith("INFLUXDB_")));
}

/** `CREATE DATABASE` is idempotent in InfluxQL: an existing database is left as it is. */
export async function createDatabase(url: string, database: string): Promise<void> {
  if (!/^[A-Za-z0-9_.-]+$/.test(database)) throw new PermanentError("CONFIG", `database name ${JSON.stringify(database)}: use letters, digits, _ . -`);
  const body = new URLSearchParams({ q: `CREATE DATABASE "${database}"` });
  let res: Response;
  try {
    res = await fetch(`${url}/query`, { method: "POST", body, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new RetryableError("UNAVAILABLE", `cannot reach InfluxDB at ${url}: ${errorMessage(err)}`, err);
  }
  const text = await res.text();
  // 1.x answers 200 with {"results":[{"statement_id":0,"error":"..."}]} when a statement fails.
  if (!res.ok || /"error"\s*:/.test(text)) throw new RetryableError("UNAVAILABLE", `CREATE DATABASE ${database} failed (HTTP ${res.status}): ${text.slice(0, 300)}`);
}
