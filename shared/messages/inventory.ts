import { z } from "zod";
import { V, count, epochMs, nonNeg, token } from "./common.ts";

export const gpuInfo = z.object({
  index: count,
  uuid: z.string().min(1),
  name: z.string(),
  powerLimitMw: nonNeg.optional(),
  minPowerLimitMw: nonNeg.optional(),
  maxPowerLimitMw: nonNeg.optional(),
  supportedSmClocksMhz: z.array(nonNeg).optional(),
  memTotalMb: nonNeg.optional(),
});
export type GpuInfo = z.infer<typeof gpuInfo>;

export const instanceInfo = z.object({
  id: token,
  upstream: z.string(),
  gpus: z.array(count).min(1),
  model: z.string().optional(),
});
export type InstanceInfo = z.infer<typeof instanceInfo>;

/** KV `nodes`, key = node id: inventory, rewritten as the heartbeat. */
export const nodeInventory = z.object({
  v: V,
  kind: z.literal("inventory"),
  node: token,
  hostname: z.string(),
  agentVersion: z.string(),
  source: z.enum(["nvml", "dcgm", "sim", "fake"]),
  driverVersion: z.string().optional(),
  gpus: z.array(gpuInfo),
  /** GPUs of the node the agent cannot read (no handle, lost before it started): missing from every window. */
  unreadableGpus: z.array(count).optional(),
  instances: z.array(instanceInfo),
  startedMs: epochMs,
  heartbeatMs: epochMs,
  publishIntervalMs: nonNeg,
  sampleIntervalMs: nonNeg,
});
export type NodeInventory = z.infer<typeof nodeInventory>;
