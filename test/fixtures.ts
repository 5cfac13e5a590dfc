import type { LoadResult, NodeInventory, PowerBatch, RequestEnergy, RequestEvent, WorkWindow } from "../shared/mod.ts";

/** One valid example of every message in the contract, for round-trip and schema tests. */
export const power: PowerBatch = {
  v: 1,
  kind: "power",
  msgId: "n1:power:1000",
  node: "n1",
  seq: 0,
  windowStartMs: 1000,
  windowEndMs: 2000,
  source: "sim",
  gpus: [
    { gpu: 0, uuid: "GPU-0", tMs: [1000.5, 1100.25], powerMw: [300_000, 310_000], energyMj: [10, 41], energyStartMj: 0, startTMs: 900.1, smClockMhz: [1980, 1980], utilPct: [50, 60] },
  ],
  jitterP99Ms: 0.4,
};

export const requestStart: RequestEvent = {
  v: 1, kind: "request", msgId: "n1:req:r1:start", node: "n1", instance: "i0", requestId: "r1", tMs: 1001, event: "start",
  endpoint: "completions", stream: true, model: "llama-2-70b", promptTokensHint: 100, maxTokens: 20, runId: "run1", workloadClass: "short-short",
};
export const requestEnd: RequestEvent = {
  v: 1, kind: "request", msgId: "n1:req:r1:end", node: "n1", instance: "i0", requestId: "r1", tMs: 1500, event: "end",
  status: "ok", httpStatus: 200, promptTokens: 100, outputTokens: 20,
};

export const work: WorkWindow = {
  v: 1, kind: "work", msgId: "n1:work:i0:1000", node: "n1", instance: "i0", gpus: [0], model: "llama-2-70b",
  windowStartMs: 1000, windowEndMs: 2000, requests: [{ requestId: "r1", prefillTokens: 100, decodeTokens: 19 }], inFlight: 0,
};

export const load: LoadResult = {
  v: 1, kind: "load", msgId: "run1:0", runId: "run1", worker: "w0", requestId: "r1", index: 0, target: "http://127.0.0.1:9000",
  scheduledMs: 1000, sentMs: 1000.3, ttftMs: 30, e2eMs: 400, tpotMs: 19, itl: { count: 19, meanMs: 19, p50Ms: 19, p90Ms: 20, p99Ms: 22, maxMs: 23 },
  requestedPromptTokens: 100, requestedOutputTokens: 20, promptTokens: 100, outputTokens: 20, status: "ok", httpStatus: 200,
};

export const energy: RequestEnergy = {
  v: 1, kind: "energy", msgId: "n1:energy:r1", node: "n1", instance: "i0", requestId: "r1", model: "llama-2-70b", startMs: 1001, endMs: 1500,
  status: "ok", promptTokens: 100, outputTokens: 20, energyMj: 31, prefillEnergyMj: 10, decodeEnergyMj: 21, idleShareMj: 0, windows: 1, incomplete: false, config: { tp: 1 },
};

export const inventory: NodeInventory = {
  v: 1, kind: "inventory", node: "n1", hostname: "h", agentVersion: "0.1.0", source: "sim",
  gpus: [{ index: 0, uuid: "GPU-0", name: "NVIDIA H100 80GB HBM3", powerLimitMw: 700_000, supportedSmClocksMhz: [1980, 1200] }],
  instances: [{ id: "i0", upstream: "http://127.0.0.1:8000", gpus: [0] }], startedMs: 1, heartbeatMs: 2, publishIntervalMs: 1000, sampleIntervalMs: 100,
};
