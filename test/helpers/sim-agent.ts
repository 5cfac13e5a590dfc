import type { NatsConnection } from "@nats-io/nats-core";
import { startAgent, type Agent, type AgentOptions } from "../../services/agent/agent.ts";
import { createDcgmSource } from "../../services/agent/dcgm-source.ts";
import { instanceEndpoints, type Simnode } from "../../services/simnode/server.ts";
import { systemClock } from "../../shared/mod.ts";

/** An agent on a simulated node: power through its DCGM-style /metrics, a tap per instance. */
export function startAgentOnSim(nc: NatsConnection, sim: Simnode, node: string, extra: Partial<AgentOptions> = {}): Promise<Agent> {
  const clock = systemClock();
  return startAgent({ nc, node, clock, source: createDcgmSource({ url: sim.metricsUrl, clock, kind: "sim" }), instances: instanceEndpoints(sim), ...extra });
}
