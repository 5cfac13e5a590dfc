import { ConfigError } from "../../shared/mod.ts";

/**
 * What the simulated node knows about hardware and models: datasheet figures only. Everything the
 * engine derives (step times, KV capacity, power) comes from these numbers plus the few efficiency
 * and power constants in perf-model.ts / power-model.ts, each with its source.
 */
export interface GpuSpec {
  id: string;
  /** As NVML / dcgm-exporter report it (modelName label). */
  name: string;
  /** Dense BF16 tensor throughput at the maximum SM clock, FLOP/s. */
  bf16Flops: number;
  /** HBM bandwidth, bytes/s. */
  hbmBytesPerS: number;
  /** Device memory, bytes. */
  memBytes: number;
  /** Maximum board power (TDP), W; also the default and maximum power limit. */
  tdpW: number;
  /** Lowest settable power limit, W. */
  minPowerLimitW: number;
  /** NVLink bandwidth per GPU, one direction, bytes/s. */
  nvlinkBytesPerS: number;
  maxSmClockMhz: number;
  memClockMhz: number;
  /** Supported graphics clocks, MHz, descending (as nvmlDeviceGetSupportedGraphicsClocks lists them). */
  supportedSmClocksMhz: readonly number[];
}

const clockSteps = (maxMhz: number, minMhz: number, stepMhz: number): number[] => {
  const out: number[] = [];
  for (let f = maxMhz; f >= minMhz; f -= stepMhz) out.push(f);
  return out;
};

export const GPUS: Readonly<Record<string, GpuSpec>> = {
  // NVIDIA H100 SXM5 80 GB datasheet: 989 TFLOP/s dense BF16, 3.35 TB/s HBM3, 700 W, NVLink 900 GB/s
  // (bidirectional → 450 GB/s each way). Clocks: `nvidia-smi -q -d SUPPORTED_CLOCKS` on H100 SXM lists
  // graphics clocks 1980 → 345 MHz in 15 MHz steps with memory clock 2619 MHz. Power limit range
  // 200–700 W (nvidia-smi -q -d POWER, "Min/Max Power Limit").
  "h100-sxm": {
    id: "h100-sxm",
    name: "NVIDIA H100 80GB HBM3",
    bf16Flops: 989e12,
    hbmBytesPerS: 3.35e12,
    memBytes: 80 * 1024 ** 3,
    tdpW: 700,
    minPowerLimitW: 200,
    nvlinkBytesPerS: 450e9,
    maxSmClockMhz: 1980,
    memClockMhz: 2619,
    supportedSmClocksMhz: clockSteps(1980, 345, 15),
  },
  // NVIDIA A100 SXM4 80 GB datasheet: 312 TFLOP/s dense BF16, 2.039 TB/s HBM2e, 400 W, NVLink 600 GB/s
  // (300 GB/s each way); graphics clocks 1410 → 210 MHz in 15 MHz steps, memory clock 1593 MHz.
  "a100-sxm": {
    id: "a100-sxm",
    name: "NVIDIA A100-SXM4-80GB",
    bf16Flops: 312e12,
    hbmBytesPerS: 2.039e12,
    memBytes: 80 * 1024 ** 3,
    tdpW: 400,
    minPowerLimitW: 100,
    nvlinkBytesPerS: 300e9,
    maxSmClockMhz: 1410,
    memClockMhz: 1593,
    supportedSmClocksMhz: clockSteps(1410, 210, 15),
  },
};

/** The H100's supported SM clocks (MHz, descending). */
export const H100_SUPPORTED_SM_CLOCKS_MHZ: readonly number[] = GPUS["h100-sxm"]!.supportedSmClocksMhz;

export interface ModelSpec {
  id: string;
  /** Total parameters (all experts), for weight bytes. */
  params: number;
  /** Parameters touched per token (= params for dense models; top-k experts for MoE). */
  activeParams: number;
  layers: number;
  dModel: number;
  kvHeads: number;
  headDim: number;
  /** MoE: experts per layer and experts per token; dense models leave these out. */
  experts?: number;
  expertsPerToken?: number;
  /** Share of params in expert FFNs (MoE only). */
  expertParamShare?: number;
  maxContext: number;
}

/** BF16 weights and KV cache: 2 bytes per value. */
export const BYTES_PER_VALUE = 2;

// Architecture figures from each model's config.json on Hugging Face (num_hidden_layers, hidden_size,
// num_key_value_heads, head_dim = hidden_size / num_attention_heads) and its model card (parameter count).
export const MODELS: Readonly<Record<string, ModelSpec>> = {
  "llama-2-13b": { id: "llama-2-13b", params: 13.0e9, activeParams: 13.0e9, layers: 40, dModel: 5120, kvHeads: 40, headDim: 128, maxContext: 4096 },
  "llama-2-70b": { id: "llama-2-70b", params: 69.0e9, activeParams: 69.0e9, layers: 80, dModel: 8192, kvHeads: 8, headDim: 128, maxContext: 4096 },
  "llama-3-8b": { id: "llama-3-8b", params: 8.03e9, activeParams: 8.03e9, layers: 32, dModel: 4096, kvHeads: 8, headDim: 128, maxContext: 8192 },
  "llama-3-70b": { id: "llama-3-70b", params: 70.6e9, activeParams: 70.6e9, layers: 80, dModel: 8192, kvHeads: 8, headDim: 128, maxContext: 8192 },
  "llama-3.1-8b": { id: "llama-3.1-8b", params: 8.03e9, activeParams: 8.03e9, layers: 32, dModel: 4096, kvHeads: 8, headDim: 128, maxContext: 131072 },
  "llama-3.1-70b": { id: "llama-3.1-70b", params: 70.6e9, activeParams: 70.6e9, layers: 80, dModel: 8192, kvHeads: 8, headDim: 128, maxContext: 131072 },
  // Mixtral-8x7B: 46.7 B total, 12.9 B active (2 of 8 experts per token); experts hold ~96% of params.
  "mixtral-8x7b": { id: "mixtral-8x7b", params: 46.7e9, activeParams: 12.9e9, layers: 32, dModel: 4096, kvHeads: 8, headDim: 128, experts: 8, expertsPerToken: 2, expertParamShare: 0.96, maxContext: 32768 },
};

/** KV-cache bytes per token (K and V, all layers, all KV heads), BF16. */
export const kvBytesPerToken = (m: ModelSpec): number => 2 * m.layers * m.kvHeads * m.headDim * BYTES_PER_VALUE;

/** Share of GPU memory the engine may use (vLLM's gpu_memory_utilization default 0.9). */
export const GPU_MEMORY_UTILIZATION = 0.9;
/** Per-GPU activation/workspace reserve, bytes (vLLM profiles ~1–3 GB at startup; we take 2 GiB). */
export const ACTIVATION_RESERVE_BYTES = 2 * 1024 ** 3;

/** KV-cache capacity in tokens for the model on `tp` GPUs; ≤ 0 when the weights do not fit. */
export function kvCapacityTokens(m: ModelSpec, g: GpuSpec, tp: number): number {
  const usable = tp * (g.memBytes * GPU_MEMORY_UTILIZATION - ACTIVATION_RESERVE_BYTES) - m.params * BYTES_PER_VALUE;
  return Math.floor(usable / kvBytesPerToken(m));
}

/** Smallest power-of-two TP degree whose KV capacity holds at least one full context. */
export function minTp(m: ModelSpec, g: GpuSpec): number {
  for (let tp = 1; tp <= 64; tp *= 2) if (kvCapacityTokens(m, g, tp) >= Math.min(m.maxContext, 4096)) return tp;
  throw new ConfigError("model", `${m.id} does not fit on 64× ${g.name}`);
}

export function gpuSpec(id: string): GpuSpec {
  const g = GPUS[id.toLowerCase()];
  if (!g) throw new ConfigError("gpuModel", `unknown GPU "${id}" (known: ${Object.keys(GPUS).join(", ")})`);
  return g;
}

export function modelSpec(id: string): ModelSpec {
  const key = id.toLowerCase().replace(/^.*\//, "").replace(/-chat-hf$|-hf$|-instruct$/, "").replace(/^meta-/, "");
  const m = MODELS[key];
  if (!m) throw new ConfigError("model", `unknown model "${id}" (known: ${Object.keys(MODELS).join(", ")})`);
  return m;
}

/** Snaps a requested SM clock to the nearest supported step (as the driver does for locked clocks). */
export function snapSmClock(g: GpuSpec, mhz: number): number {
  let best = g.supportedSmClocksMhz[0]!;
  for (const f of g.supportedSmClocksMhz) if (Math.abs(f - mhz) < Math.abs(best - mhz)) best = f;
  return best;
}
