import type { NatsConnection } from "@nats-io/nats-core";
import { stopAll, systemClock } from "../../../shared/mod.ts";
import { createDcgmSource, startAgent, type Agent, type AgentOptions } from "../../agent/mod.ts";
import { instanceEndpoints, startSimnode, type Simnode } from "../../simnode/mod.ts";

/**
 * The evaluation's simulated fleet: `nodes` simnodes of `gpus` GPUs, one instance each (TP =
 * gpus: a simnode applies one clock to all its GPUs, so one instance per node lets a per-instance
 * clock be the node's), each with an agent in front (power from its DCGM-style /metrics, a tap per
 * instance, clock control through the simnode's admin endpoint), all in this process.
 */
export interface EvalNode {
  id: string;
  sim: Simnode;
  agent: Agent;
  /** The agent's tap in front of the node's one instance. */
  tapUrl: string;
}

export interface EvalFleet {
  nodes: EvalNode[];
  /** Stops agents (closing their last window) and simnodes. Idempotent. */
  stop(): Promise<void>;
}

type ClockBackend = NonNullable<AgentOptions["clockBackend"]>;

/**
 * Clock control on a simnode through its admin endpoint (POST /admin/config, /admin/reset-clocks);
 * the agent's own simnode backend is not among its public names, and this app composes services
 * through those only. One clock for the node, as the simnode has.
 */
function simnodeBackend(adminUrl: string): ClockBackend {
  const post = async (path: string, body?: unknown) => {
    const res = await fetch(new URL(path, adminUrl), { method: "POST", headers: { "content-type": "application/json" }, ...(body ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`simnode ${path}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
  };
  return {
    lockSmClock: (_gpu, _lo, hi) => post("/admin/config", { smClockMhz: hi }),
    resetSmClock: () => post("/admin/reset-clocks"),
    setPowerLimitMw: (_gpu, mw) => post("/admin/config", { powerLimitW: mw / 1000 }),
  };
}

export async function startEvalFleet(o: { nc: NatsConnection; prefix: string; nodes: number; gpus: number; model: string; seed: number; log?: (l: string) => void }): Promise<EvalFleet> {
  const stops: (() => Promise<void>)[] = [];
  const nodes: EvalNode[] = [];
  const clock = systemClock();
  try {
    for (let i = 0; i < o.nodes; i++) {
      const id = `${o.prefix}-n${i}`;
      const sim = await startSimnode({ gpus: o.gpus, tp: o.gpus, model: o.model, seed: o.seed + i, hostname: id });
      stops.push(() => sim.stop());
      const agent = await startAgent({
        nc: o.nc, node: id, clock, source: createDcgmSource({ url: sim.metricsUrl, clock, kind: "sim" }), instances: instanceEndpoints(sim), clockBackend: simnodeBackend(sim.url),
        ...(o.log ? { log: (l: string) => o.log!(`${id}: ${l}`) } : {}),
      });
      stops.push(() => agent.stop());
      const tapUrl = Object.values(agent.tapUrls)[0];
      if (!tapUrl) throw new Error(`${id}: the agent opened no tap`);
      nodes.push({ id, sim, agent, tapUrl });
    }
  } catch (err) {
    await stopAll([...stops].reverse());
    throw err;
  }
  let stopped: Promise<void> | undefined;
  return { nodes, stop: () => (stopped ??= stopAll([...stops].reverse())) };
}
