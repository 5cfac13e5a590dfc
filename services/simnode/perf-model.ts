import { BYTES_PER_VALUE, kvBytesPerToken, type GpuSpec, type ModelSpec } from "./catalog.ts";

/**
 * Time of one engine iteration from first principles (a roofline per kernel class):
 * - linear layers (GEMM): 2·activeParams FLOPs per token vs. reading the weights once per step —
 *   compute-bound for prefill, memory-bound for decode at small batch;
 * - attention: prefill is FLOP-bound (causal pairs), decode reads each sequence's KV cache;
 * - tensor parallelism splits both by `tp` and adds two all-reduces per layer over NVLink;
 * - per-sequence elementwise/sampling kernels and a fixed per-step scheduler cost.
 * Compute scales with the SM clock; HBM bandwidth barely does near the maximum clock and more and
 * more below a knee where the SMs can no longer keep enough loads in flight (memBandwidthFrac).
 * Pure: no state, no clock reads.
 */

/** What one iteration processes (sums over the batch). */
export interface StepWork {
  /** Prompt tokens prefilled in this step (chunked prefill). */
  prefillTokens: number;
  /** Σ over prefill chunks of chunk·(start + chunk/2): causal attention query-key pairs. */
  prefillAttnPairs: number;
  /** Sequences with a prefill chunk in this step. */
  prefillSeqs: number;
  /** Sequences decoding one token in this step. */
  decodeSeqs: number;
  /** Σ over decoding sequences of their context length (tokens whose KV is read). */
  decodeCtxTokens: number;
}

/** One class of kernels within a step: its time and how busy tensor cores and HBM were in it. */
export interface Phase {
  kind: "linear" | "attention" | "comm" | "misc" | "host";
  timeMs: number;
  /** Tensor/ALU busy share 0..1 (compute time / phase time). */
  computeUtil: number;
  /** HBM busy share 0..1 (memory time / phase time). */
  memUtil: number;
}

// Efficiencies: share of datasheet peak that serving kernels reach.
/** cuBLAS BF16 GEMM on H100 reaches ~600–700 of 989 TFLOP/s at large shapes (NVIDIA/public benchmarks). */
export const GEMM_FLOP_EFFICIENCY = 0.62;
/** Streaming weight reads (GEMV-like decode) reach ~80% of HBM peak (STREAM-class H100 results ≈ 2.7–3.0 TB/s). */
export const WEIGHT_READ_EFFICIENCY = 0.8;
/** Paged-attention KV reads are gather-heavy: ~60% of HBM peak (vLLM paged-attention kernel benchmarks). */
export const KV_READ_EFFICIENCY = 0.6;
/** FlashAttention-2 forward on H100 ≈ 350–400 TFLOP/s (Dao 2023) → ~40% of dense peak. */
export const ATTN_FLOP_EFFICIENCY = 0.4;
/** Overlap of the non-binding resource within a kernel: t = max(c, m) + OVERLAP_PENALTY·min(c, m). */
export const OVERLAP_PENALTY = 0.1;
/**
 * Memory-bound kernels need SM cycles to keep HBM busy: the bytes a GPU can have in flight are
 * bounded (load slots per SM), and part of each load's latency is on-chip, counted in SM-clock
 * cycles (L1 → L2 → crossbar; the L2 and crossbar run on the graphics clock). By Little's law the
 * bandwidth they sustain falls as the clock drops, gently at first and then in proportion to it.
 * Modelled as a smooth minimum of "HBM-bound" and "issue-bound ∝ f":
 *   bw(f) ∝ (1 + (MEM_ISSUE_KNEE_MHZ / f)^MEM_ISSUE_KNEE_SHARPNESS)^(−1/sharpness), normalised to 1 at f_max.
 * NVIDIA publishes neither quantity; the two constants are fitted to the published trends (PAPER.md):
 * decode throughput "about the same" at 1.6 GHz as at 2 GHz (here ≈ −1% up to batch 128), latency growing and
 * energy per token rising again below an interior optimum (finding 1), which DynamoLLM places at
 * 1.2 GHz for its cheapest Llama2-70B class (short/short, TP2). The knee scales with f_max for other GPUs.
 */
export const MEM_ISSUE_KNEE_MHZ = 1250;
export const MEM_ISSUE_KNEE_SHARPNESS = 10;
/** The H100 clock the knee above was fitted at; other GPUs scale it by their own maximum. */
const KNEE_FIT_MAX_MHZ = 1980;

/** Share of the max-clock memory bandwidth that memory-bound kernels sustain at SM clock `smMhz`. */
export function memBandwidthFrac(g: GpuSpec, smMhz: number): number {
  const knee = (MEM_ISSUE_KNEE_MHZ * g.maxSmClockMhz) / KNEE_FIT_MAX_MHZ;
  const s = MEM_ISSUE_KNEE_SHARPNESS;
  const at = (f: number): number => Math.pow(1 + Math.pow(knee / f, s), -1 / s);
  return Math.min(1, at(smMhz) / at(g.maxSmClockMhz));
}
/** Latency of one small NCCL all-reduce over NVLink, ms (NCCL tests on DGX H100: ~10–20 µs at ≤1 MB). */
export const ALLREDUCE_LATENCY_MS = 0.015;
/** Host-side scheduler + launch cost per iteration, ms (vLLM step overhead with CUDA graphs ≈ 1 ms). */
export const STEP_HOST_MS = 1.0;
/**
 * Per-sequence GPU work outside GEMM/attention (norms, rotary, sampling, KV writes), ms. Fitted so
 * ML.ENERGY's median ITL for Llama 3.1 8B grows from 7.3 ms (batch 8) to 47.4 ms (batch 512).
 */
export const PER_SEQ_MISC_MS = 0.02;

const ms = (seconds: number): number => seconds * 1000;

export interface PerfContext {
  model: ModelSpec;
  gpu: GpuSpec;
  tp: number;
}

/** Bytes of weights one GPU reads in a step that processes `tokens` tokens. */
export function weightBytesPerGpu(m: ModelSpec, tp: number, tokens: number): number {
  const total = m.params * BYTES_PER_VALUE;
  if (!m.experts || !m.expertsPerToken || !m.expertParamShare) return total / tp;
  // MoE: an expert's weights are read if any token in the step routes to it (uniform routing).
  const touched = 1 - Math.pow(1 - m.expertsPerToken / m.experts, Math.max(1, tokens));
  return (total * (1 - m.expertParamShare) + total * m.expertParamShare * touched) / tp;
}

/** The phases of one step at SM clock `smMhz`. Empty work gives no phases. */
export function stepPhases(ctx: PerfContext, w: StepWork, smMhz: number): Phase[] {
  const { model: m, gpu: g, tp } = ctx;
  const tokens = w.prefillTokens + w.decodeSeqs;
  if (tokens === 0) return [];
  const clockFrac = smMhz / g.maxSmClockMhz;
  const bwFrac = memBandwidthFrac(g, smMhz);
  const phases: Phase[] = [];
  const roofline = (kind: Phase["kind"], computeMs: number, memMs: number): void => {
    const t = Math.max(computeMs, memMs) + OVERLAP_PENALTY * Math.min(computeMs, memMs);
    if (t > 0) phases.push({ kind, timeMs: t, computeUtil: computeMs / t, memUtil: memMs / t });
  };

  const linFlops = (2 * m.activeParams * tokens) / tp;
  const linC = ms(linFlops / (g.bf16Flops * GEMM_FLOP_EFFICIENCY * clockFrac));
  const linM = ms(weightBytesPerGpu(m, tp, tokens) / (g.hbmBytesPerS * WEIGHT_READ_EFFICIENCY * bwFrac));
  roofline("linear", linC, linM);

  // Attention: 2 matmuls (QKᵀ, PV) × 2 FLOPs per MAC × head_dim·heads (= dModel) per query-key pair per layer.
  const attnFlops = (4 * m.layers * m.dModel * (w.prefillAttnPairs + w.decodeCtxTokens)) / tp;
  const attnC = ms(attnFlops / (g.bf16Flops * ATTN_FLOP_EFFICIENCY * clockFrac));
  const kvBytes = (w.decodeCtxTokens * kvBytesPerToken(m)) / tp;
  const attnM = ms(kvBytes / (g.hbmBytesPerS * KV_READ_EFFICIENCY * bwFrac));
  roofline("attention", attnC, attnM);

  if (tp > 1) {
    // Two all-reduces per layer (after attention and after the MLP) of tokens·dModel BF16 values; ring
    // all-reduce moves 2·(tp−1)/tp of the buffer over each GPU's link.
    const bytes = tokens * m.dModel * BYTES_PER_VALUE;
    const perAllReduce = ALLREDUCE_LATENCY_MS + ms((2 * (tp - 1) * bytes) / tp / g.nvlinkBytesPerS);
    phases.push({ kind: "comm", timeMs: 2 * m.layers * perAllReduce, computeUtil: 0, memUtil: 0.1 });
  }
  // Elementwise work is memory-bound and partly clock-bound: model it as ~60% HBM-busy.
  phases.push({ kind: "misc", timeMs: (PER_SEQ_MISC_MS * (w.decodeSeqs + w.prefillSeqs)) / Math.min(1, 0.5 + 0.5 * bwFrac), computeUtil: 0.1, memUtil: 0.6 });
  phases.push({ kind: "host", timeMs: STEP_HOST_MS, computeUtil: 0, memUtil: 0 });
  return phases;
}

export const phasesTimeMs = (phases: readonly Phase[]): number => phases.reduce((s, p) => s + p.timeMs, 0);
