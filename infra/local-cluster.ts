import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { PermanentError, errorMessage } from "../shared/errors.ts";
import { createLifecycle, onShutdownSignal, stopAll } from "../shared/lifecycle.ts";
import { ensureBinaries } from "./binaries.ts";
import { startNatsNode, type NatsNode } from "./nats-node.ts";
import { freePorts } from "./ports.ts";
import { ServerStartError, waitUntilReady } from "./readiness.ts";
import { killRunning, serialStopGraceMs } from "./supervise.ts";
import { configString, renderInfraTemplate } from "./templates.ts";

/**
 * A 3-node NATS JetStream cluster on loopback, from infra/nats/cluster/n{1,2,3}.conf: what a fleet
 * runs (R3 streams), small enough for a test or a laptop.
 */
export interface LocalClusterOptions {
  /** Default: a new directory under os.tmpdir(), removed on stop. */
  runDir?: string;
  /** Use the documented layout (clients 4231-4233, routes 6231-6233, monitoring 8231-8233). */
  fixedPorts?: boolean;
  log?: (line: string) => void;
  install?: boolean;
}

export interface LocalCluster {
  /** Client URLs of the three nodes, n1 first. */
  urls: string[];
  /** Comma-separated, as `--nats` and JOULESTREAM_NATS_URL take them. */
  servers: string;
  nodes: NatsNode[];
  runDir: string;
  stop(): Promise<void>;
}

export const CLUSTER_NODES = ["n1", "n2", "n3"] as const;
export const FIXED_CLUSTER_PORTS = { client: [4231, 4232, 4233], cluster: [6231, 6232, 6233], monitor: [8231, 8232, 8233] };
/** Meta-leader election and catch-up take a few seconds on a cold cluster. */
const CLUSTER_READY_TIMEOUT_MS = 30_000;
const PORT_ATTEMPTS = 3;

export async function startLocalCluster(opts: LocalClusterOptions = {}): Promise<LocalCluster> {
  const log = opts.log ?? (() => {});
  const bins = await ensureBinaries(["nats-server"], { install: opts.install ?? true, log });
  const ownDir = opts.runDir === undefined;
  const runDir = ownDir ? await mkdtemp(join(tmpdir(), "joulestream-cluster-")) : resolve(opts.runDir!);
  if (/["\\\n]/.test(runDir)) throw new PermanentError("CONFIG", `run dir ${JSON.stringify(runDir)}: must not contain quotes, backslashes or newlines`);

  for (let attempt = 1; ; attempt++) {
    const ports = opts.fixedPorts ? FIXED_CLUSTER_PORTS : await pickPorts();
    const vars: Record<string, number> = {};
    CLUSTER_NODES.forEach((_, k) => {
      vars[`N${k + 1}_CLIENT_PORT`] = ports.client[k]!;
      vars[`N${k + 1}_CLUSTER_PORT`] = ports.cluster[k]!;
      vars[`N${k + 1}_MONITOR_PORT`] = ports.monitor[k]!;
    });
    // All three start together: a node's /healthz waits for the others (JetStream meta group).
    // The first failure abandons the other starts instead of letting them wait for their deadline.
    const abandon = new AbortController();
    const started = await Promise.allSettled(
      CLUSTER_NODES.map(async (name, k) => {
        const storeDir = join(runDir, name, "jetstream");
        await mkdir(storeDir, { recursive: true });
        const configText = await renderInfraTemplate(`nats/cluster/${name}.conf`, { ...vars, STORE_DIR: configString(storeDir) });
        return await startNatsNode({
          binary: bins["nats-server"],
          name: `nats-${name}`,
          configText,
          dir: runDir,
          clientPort: ports.client[k]!,
          monitorPort: ports.monitor[k]!,
          readyTimeoutMs: CLUSTER_READY_TIMEOUT_MS,
          signal: abandon.signal,
        }).catch((err: unknown) => {
          abandon.abort(err);
          throw err;
        });
      }),
    );
    const nodes = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
    if (!abandon.signal.aborted) {
      try {
        // R3 streams can only be created once the JetStream meta group has a leader.
        await waitUntilReady(nodes[0]!.proc, () => hasMetaLeader(nodes[0]!.monitorUrl), CLUSTER_READY_TIMEOUT_MS);
      } catch (err) {
        await stopAll(nodes.map((n) => () => n.stop()));
        if (ownDir) await rm(runDir, { recursive: true, force: true });
        throw err;
      }
      const urls = nodes.map((n) => n.url);
      log(`NATS cluster up: ${urls.join(", ")} (run dir ${runDir})`);
      const procs = nodes.map((n) => n.proc);
      const life = createLifecycle({
        graceMs: serialStopGraceMs(procs.length),
        graceful: async () => {
          await stopAll(nodes.map((n) => () => n.stop()));
          if (ownDir) await rm(runDir, { recursive: true, force: true });
        },
        force: (graceMs) => log(`NATS cluster: not stopped within ${graceMs} ms; killed ${killRunning(procs).join(", ") || "none"}`),
      });
      return {
        urls,
        servers: urls.join(","),
        nodes,
        runDir,
        stop: async () => {
          await life.stop();
        },
      };
    }
    await stopAll(nodes.map((n) => () => n.stop()));
    // The first failure, which abandoned the sibling starts.
    const err: unknown = abandon.signal.reason;
    const retry = !opts.fixedPorts && err instanceof ServerStartError && err.addressInUse && attempt < PORT_ATTEMPTS;
    if (!retry) {
      if (ownDir) await rm(runDir, { recursive: true, force: true });
      throw err;
    }
    log(`port taken while starting the cluster (${errorMessage(err).split("\n")[0]}); picking others`);
  }
}

async function hasMetaLeader(monitorUrl: string): Promise<boolean> {
  const res = await fetch(`${monitorUrl}/jsz`, { signal: AbortSignal.timeout(1_000) });
  const jsz = (await res.json()) as { meta_cluster?: { leader?: string; cluster_size?: number } };
  return Boolean(jsz.meta_cluster?.leader) && (jsz.meta_cluster?.cluster_size ?? 0) >= CLUSTER_NODES.length;
}

async function pickPorts(): Promise<typeof FIXED_CLUSTER_PORTS> {
  const p = await freePorts(9);
  return { client: p.slice(0, 3), cluster: p.slice(3, 6), monitor: p.slice(6, 9) };
}

// `node --import=tsx infra/local-cluster.ts [--fixed-ports]`: run until Ctrl-C.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const cluster = await startLocalCluster({ fixedPorts: process.argv.includes("--fixed-ports"), log: (l) => process.stderr.write(l + "\n") });
  process.stdout.write(`JOULESTREAM_NATS_URL=${cluster.servers}\n`);
  // The servers' handles are unref'd; this timer keeps the process (and so the cluster) alive.
  setInterval(() => undefined, 1 << 30);
  onShutdownSignal(() => cluster.stop());
}
