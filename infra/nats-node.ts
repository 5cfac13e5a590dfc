import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { LOOPBACK, ownsPorts } from "./ports.ts";
import { httpStatus, waitUntilReady } from "./readiness.ts";
import { spawnSupervised, type SupervisedProcess } from "./supervise.ts";

export interface NatsNodeOptions {
  binary: string;
  /** Names the config file, the log file and the process in errors: "nats-server", "nats-n1". */
  name: string;
  /** The rendered server config (see infra/nats/*.conf). */
  configText: string;
  /** Where `<name>.conf` and `<name>.log` are written. */
  dir: string;
  clientPort: number;
  /** Monitoring port on 127.0.0.1 the config enables; /healthz tells readiness. */
  monitorPort: number;
  readyTimeoutMs?: number;
  /** Abandons the start (the process is stopped): a sibling node failed. */
  signal?: AbortSignal;
}

export interface NatsNode {
  url: string;
  monitorUrl: string;
  clientPort: number;
  monitorPort: number;
  proc: SupervisedProcess;
  stop(): Promise<void>;
}

export const NATS_READY_TIMEOUT_MS = 15_000;

/**
 * Starts one nats-server from a rendered config and waits for `/healthz` to answer 200, which on
 * 2.9 also means JetStream is up (on a cluster: the node has caught up with the meta group).
 */
export async function startNatsNode(o: NatsNodeOptions): Promise<NatsNode> {
  const configPath = join(o.dir, `${o.name}.conf`);
  await writeFile(configPath, o.configText);
  const proc = spawnSupervised({ name: o.name, command: o.binary, args: ["-c", configPath], logPath: join(o.dir, `${o.name}.log`) });
  const monitorUrl = `http://${LOOPBACK}:${o.monitorPort}`;
  try {
    await waitUntilReady(proc, async () => (await httpStatus(`${monitorUrl}/healthz`)) === 200 && (await ownsPorts(proc.pid, [o.clientPort, o.monitorPort])), o.readyTimeoutMs ?? NATS_READY_TIMEOUT_MS, o.signal);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return {
    url: `nats://${LOOPBACK}:${o.clientPort}`,
    monitorUrl,
    clientPort: o.clientPort,
    monitorPort: o.monitorPort,
    proc,
    stop: async () => {
      await proc.stop();
    },
  };
}
