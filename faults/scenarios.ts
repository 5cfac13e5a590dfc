import type { JetStreamManager } from "@nats-io/jetstream";
import type { AnalyzerProcess } from "./analyzer-process.ts";
import type { FaultCluster } from "./cluster.ts";
import { hostileMessages, injectHostile } from "./hostile.ts";
import { mostLeader, serverOfClient, streamLeader } from "./roles.ts";
import type { NatsConnection } from "@nats-io/nats-core";

/**
 * The faults of issue 19, each done once, mid-run, to a pipeline under load (scenario-run.ts sets
 * it up and judges it). A killed NATS server is started again after `restartAfterS`, as its
 * supervisor (systemd, a StatefulSet) would; "server down" keeps one away for `downS`.
 */
export interface Scale {
  name: "short" | "full";
  /** Load before the fault. */
  faultAtS: number;
  /** Load after the fault is over. */
  tailS: number;
  ratePerS: number;
  restartAfterS: number;
  downS: number;
  freezeS: number;
  hostile: number;
  hostileOverS: number;
}

export const SCALES: Record<Scale["name"], Scale> = {
  short: { name: "short", faultAtS: 3, tailS: 2, ratePerS: 3, restartAfterS: 3, downS: 4, freezeS: 4, hostile: 2_000, hostileOverS: 2 },
  // The durations of issue 19: a server down 60 s, InfluxDB frozen 30 s, 10,000 hostile messages.
  full: { name: "full", faultAtS: 10, tailS: 10, ratePerS: 4, restartAfterS: 10, downS: 60, freezeS: 30, hostile: 10_000, hostileOverS: 10 },
};

export interface FaultContext {
  cluster: FaultCluster;
  jsm: JetStreamManager;
  /** The harness's own connection (all three servers). */
  nc: NatsConnection;
  /** The agent's connection: the server it is on is `agentNc.info.server_name`. */
  agentNc: NatsConnection;
  analyzers: AnalyzerProcess[];
  /** Durable name of the analyzer under test (its buckets are `<bucket>-<name>`). */
  analyzerName: string;
  node: string;
  runId: string;
  scale: Scale;
  log(line: string): void;
}

export interface Scenario {
  name: string;
  what: string;
  /** Analyzer processes sharing the work (default 1). */
  analyzers?: number;
  /** Seconds the fault lasts at this scale, so the load spans it. */
  durationS(s: Scale): number;
  /** Does the fault and undoes it (restart, thaw); resolves with what was done, for the report. */
  inject(ctx: FaultContext): Promise<string>;
  /** Hostile messages sent (checked against DEADLETTER). */
  hostile?(s: Scale): number;
}

const sleep = (s: number) => new Promise((r) => setTimeout(r, s * 1000));

async function killAndRestart(ctx: FaultContext, name: string, why: string): Promise<string> {
  const server = ctx.cluster.server(name);
  ctx.log(`kill -9 ${name} (${why})`);
  await server.kill9();
  await sleep(ctx.scale.restartAfterS);
  await server.restart();
  return `kill -9 ${name} (${why}), restarted after ${ctx.scale.restartAfterS} s`;
}

export const SCENARIOS: Scenario[] = [
  {
    name: "stream-leader",
    what: "kill -9 the leader of POWER",
    durationS: (s) => s.restartAfterS,
    inject: async (ctx) => killAndRestart(ctx, await streamLeader(ctx.jsm, "POWER"), "leader of POWER"),
  },
  {
    name: "agent-server",
    what: "kill -9 the server the agent is connected to",
    durationS: (s) => s.restartAfterS,
    inject: async (ctx) => killAndRestart(ctx, ctx.agentNc.info!.server_name, "the agent's server"),
  },
  {
    name: "bucket-server",
    what: "kill -9 the server leading the analyzer's buckets",
    durationS: (s) => s.restartAfterS,
    async inject(ctx) {
      const buckets = ["joulestream-analyzer-state", "joulestream-analyzer-join", "joulestream-analyzer-leases"].map((b) => `KV_${b}-${ctx.analyzerName}`);
      const { server, leads } = await mostLeader(ctx.jsm, buckets);
      return await killAndRestart(ctx, server, `leader of ${leads.join(", ")}`);
    },
  },
  {
    name: "server-down",
    what: "the analyzer's server down (clean stop), then back",
    durationS: (s) => s.downS,
    async inject(ctx) {
      const name = await serverOfClient(ctx.cluster.servers, `joulestream-${ctx.analyzerName}`);
      if (!name) throw new Error(`no server lists the analyzer's connection joulestream-${ctx.analyzerName} in its /connz`);
      const server = ctx.cluster.server(name);
      ctx.log(`stopping ${name} for ${ctx.scale.downS} s`);
      await server.stop();
      await sleep(ctx.scale.downS);
      await server.restart();
      return `${name} (the analyzer's server) stopped, restarted after ${ctx.scale.downS} s`;
    },
  },
  {
    name: "analyzer-replica",
    what: "kill -9 the analyzer replica holding the partition; the standby takes over",
    analyzers: 2,
    // The lease of a dead replica expires after 10 s (partitions.ts), then the standby takes over.
    durationS: () => 12,
    async inject(ctx) {
      const holder = ctx.analyzers.find((a) => a.lines().some((l) => /partition 0: acquired/.test(l)));
      if (!holder) throw new Error(`no analyzer replica says it holds partition 0 (${ctx.analyzers.map((a) => `${a.label}: ${a.lines().slice(-2).join(" | ")}`).join("; ")})`);
      ctx.log(`kill -9 analyzer ${holder.label} (pid ${holder.pid}, holds partition 0)`);
      await holder.kill9();
      const standby = ctx.analyzers.find((a) => a !== holder)!;
      const took = await standby.waitFor(/partition 0: acquired/, 30_000);
      return `kill -9 analyzer ${holder.label} holding partition 0; ${standby.label} ${took ? "took it over" : "did NOT take it over within 30 s"}`;
    },
  },
  {
    name: "influx-freeze",
    what: "InfluxDB frozen (SIGSTOP), then thawed",
    durationS: (s) => s.freezeS,
    async inject(ctx) {
      ctx.cluster.freezeInflux();
      try {
        await sleep(ctx.scale.freezeS);
      } finally {
        ctx.cluster.thawInflux();
      }
      return `influxd frozen ${ctx.scale.freezeS} s`;
    },
  },
  {
    name: "hostile",
    what: "hostile messages on POWER, WORK, REQUESTS and LOAD",
    durationS: (s) => s.hostileOverS,
    hostile: (s) => s.hostile,
    async inject(ctx) {
      const msgs = hostileMessages(ctx.scale.hostile, ctx.node, ctx.runId);
      await injectHostile(ctx.nc, msgs, ctx.scale.hostileOverS * 1000, ctx.runId);
      return `${msgs.length} hostile messages over ${ctx.scale.hostileOverS} s`;
    },
  },
];
