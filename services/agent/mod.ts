/** The node agent: public names (what apps and tests compose; everything else is internal). */
export { startAgent, requestBatcher, splitHostPort, AGENT_VERSION, type Agent, type AgentOptions, type AgentInstance, type AgentStats } from "./agent.ts";
export { createDcgmSource, type DcgmSourceOptions } from "./dcgm-source.ts";
export type { PowerSource, GpuReading, SourceDescription } from "./power-source.ts";
export type { CpuEnergyMeter, SamplerStats } from "./sampler.ts";
export { agentCommand } from "./command.ts";
export { createNvmlSource, type NvmlSource, type NvmlSourceOptions } from "./nvml/mod.ts";
export { createWorkTracker, type WorkTracker, type WorkTrackerOptions, type EngineCounts } from "./work-tracker.ts";
export { createPrefillSpread, ENGINE_LAG_MS, type PrefillSpread } from "./prefill-spread.ts";
