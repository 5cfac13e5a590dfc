import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinaries } from "../infra/binaries.ts";
import type { InfluxNode } from "../infra/influx-node.ts";
import { startLocalCluster, type LocalCluster } from "../infra/local-cluster.ts";
import { startInflux } from "../infra/local-stack.ts";
import { startNatsNode } from "../infra/nats-node.ts";
import type { ExitInfo, SupervisedProcess } from "../infra/supervise.ts";
import { stopAll } from "../shared/mod.ts";

/**
 * The servers a fault scenario runs on: the 3-node NATS cluster of infra/local-cluster.ts and one
 * influxd, with the faults done to them (kill -9, a stop, a restart, a freeze) and a ledger of
 * every exit: an exit the suite did not cause is a crash, and the scenario fails on it.
 *
 * Not infra/local-cluster-stack.ts: that one stops everything when a server exits, which is
 * exactly what these scenarios do on purpose.
 */
export interface FaultServer {
  /** server_name in the config: n1, n2, n3. */
  readonly name: string;
  readonly url: string;
  readonly monitorUrl: string;
  /** The current process (a restart replaces it). */
  proc(): SupervisedProcess;
  running(): boolean;
  /** SIGKILL: no shutdown, no flush. Resolves once the process is gone. */
  kill9(): Promise<void>;
  /** SIGTERM: the server's own clean shutdown. */
  stop(): Promise<void>;
  /** Starts it again from its config and store, and waits for /healthz (caught up with the meta group). */
  restart(): Promise<void>;
}

export interface FaultCluster {
  servers: FaultServer[];
  /** Comma-separated client URLs of all three. */
  natsUrl: string;
  influxUrl: string;
  influxPid(): number;
  server(name: string): FaultServer;
  /** SIGSTOP influxd: connections stay open, nothing answers. */
  freezeInflux(): void;
  thawInflux(): void;
  /** Exits nobody asked for: "nats-n2 (signal SIGSEGV)". */
  crashes(): string[];
  stop(): Promise<void>;
}

export async function startFaultCluster(log: (line: string) => void = () => {}): Promise<FaultCluster> {
  const bins = await ensureBinaries(["nats-server", "influxd"], { install: false, log });
  const [c, i] = await Promise.allSettled([startLocalCluster({ install: false, log }), startInfluxIn(bins.influxd)]);
  if (c.status === "rejected" || i.status === "rejected") {
    await stopAll([
      async () => {
        if (c.status === "fulfilled") await c.value.stop();
      },
      async () => {
        if (i.status === "fulfilled") await i.value.node.stop();
      },
    ]);
    throw c.status === "rejected" ? c.reason : (i as PromiseRejectedResult).reason;
  }
  const cluster: LocalCluster = c.value;
  const influx: InfluxNode = i.value.node;
  const crashes: string[] = [];
  const expected = new Set<SupervisedProcess>();
  let stopping = false;
  const watch = (proc: SupervisedProcess) =>
    void proc.exited.then((info: ExitInfo) => {
      if (!expected.has(proc) && !stopping) crashes.push(`${proc.name} (${info.signal ? `signal ${info.signal}` : `code ${info.code}`})`);
    });
  const restarted: SupervisedProcess[] = [];

  const servers: FaultServer[] = cluster.nodes.map((node, k) => {
    const name = `n${k + 1}`;
    let proc = node.proc;
    watch(proc);
    const gone = async (signal: NodeJS.Signals) => {
      expected.add(proc);
      if (proc.running()) process.kill(proc.pid, signal);
      await proc.exited;
    };
    return {
      name,
      url: node.url,
      monitorUrl: node.monitorUrl,
      proc: () => proc,
      running: () => proc.running(),
      kill9: () => gone("SIGKILL"),
      stop: () => gone("SIGTERM"),
      async restart() {
        if (proc.running()) throw new Error(`${name} is running`);
        // startNatsNode wrote the rendered config as <dir>/nats-<name>.conf: the same ports and store.
        const configText = await readFile(join(cluster.runDir, `nats-${name}.conf`), "utf8");
        const again = await startNatsNode({ binary: bins["nats-server"], name: `nats-${name}`, configText, dir: cluster.runDir, clientPort: node.clientPort, monitorPort: node.monitorPort });
        proc = again.proc;
        restarted.push(proc);
        watch(proc);
      },
    };
  });
  watch(influx.proc);

  return {
    servers,
    natsUrl: cluster.servers,
    influxUrl: influx.url,
    influxPid: () => influx.proc.pid,
    server(name) {
      const s = servers.find((x) => x.name === name);
      if (!s) throw new Error(`no server ${name} (the cluster has ${servers.map((x) => x.name).join(", ")})`);
      return s;
    },
    freezeInflux: () => void process.kill(influx.proc.pid, "SIGSTOP"),
    thawInflux: () => void process.kill(influx.proc.pid, "SIGCONT"),
    crashes: () => [...crashes],
    async stop() {
      stopping = true;
      // A frozen influxd ignores SIGTERM until it is thawed.
      if (influx.proc.running()) process.kill(influx.proc.pid, "SIGCONT");
      await stopAll([...restarted.map((p) => async () => void (await p.stop())), () => cluster.stop(), () => influx.stop()]);
    },
  };
}

async function startInfluxIn(binary: string): Promise<{ node: InfluxNode }> {
  const dir = await mkdtemp(join(tmpdir(), "joulestream-faults-influx-"));
  const node = await startInflux(binary, dir, undefined);
  const stop = async () => {
    await node.stop();
    await rm(dir, { recursive: true, force: true });
  };
  return { node: { ...node, stop } };
}
