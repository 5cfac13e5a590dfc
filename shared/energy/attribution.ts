import type { WorkItem } from "../mod.ts";

/**
 * Splits one instance-window's energy among the requests active in it, in proportion to the work
 * each did: w = prefillWeight × prefill tokens + decode tokens. A window without work is idle.
 * Pure. Invariants (tested as properties): Σ shares + idle = energy (to float precision), every
 * share ≥ 0, and the result does not depend on the order of `requests`.
 *
 * `prefillWeight` is the energy cost of a prefill token relative to a decode token. Prefill runs
 * all prompt tokens of a request in one compute-bound pass, while each decode token needs a pass
 * over the weights, so a prefill token costs much less; the default is a deliberate round figure to
 * be calibrated per deployment (the simulated node reports its own ratio).
 */
export const DEFAULT_PREFILL_WEIGHT = 0.1;

export interface Share {
  requestId: string;
  energyMj: number;
  prefillMj: number;
  decodeMj: number;
  prefillTokens: number;
  decodeTokens: number;
}

export interface WindowAttribution {
  shares: Share[];
  idleMj: number;
}

/** Duplicates of one request merged (a WORK list is a set by requestId), with the ids in a fixed order. */
interface Merged {
  p: number;
  d: number;
  /** Σ decode tokens' contexts, Σ prefill tokens' positions; and whether an item with tokens lacked them. */
  c: number;
  pc: number;
  noCtx: boolean;
  noPrefillCtx: boolean;
}

function mergeByRequest(requests: readonly WorkItem[]): { merged: Map<string, Merged>; ids: string[] } {
  const merged = new Map<string, Merged>();
  for (const r of requests) {
    const m = merged.get(r.requestId);
    const noCtx = r.decodeTokens > 0 && r.decodeCtxTokens === undefined;
    const noPrefillCtx = r.prefillTokens > 0 && r.prefillCtxTokens === undefined;
    if (m) {
      m.p += r.prefillTokens;
      m.d += r.decodeTokens;
      m.c += r.decodeCtxTokens ?? 0;
      m.pc += r.prefillCtxTokens ?? 0;
      m.noCtx ||= noCtx;
      m.noPrefillCtx ||= noPrefillCtx;
    } else merged.set(r.requestId, { p: r.prefillTokens, d: r.decodeTokens, c: r.decodeCtxTokens ?? 0, pc: r.prefillCtxTokens ?? 0, noCtx, noPrefillCtx });
  }
  return { merged, ids: [...merged.keys()].sort() };
}

export function attributeWindow(energyMj: number, requests: readonly WorkItem[], prefillWeight = DEFAULT_PREFILL_WEIGHT): WindowAttribution {
  if (!(energyMj >= 0)) throw new RangeError(`window energy must be ≥ 0, got ${energyMj}`);
  const { merged, ids } = mergeByRequest(requests);
  let total = 0;
  for (const id of ids) {
    const m = merged.get(id)!;
    total += prefillWeight * m.p + m.d;
  }
  if (total <= 0) return { shares: [], idleMj: energyMj };
  const shares: Share[] = [];
  for (const id of ids) {
    const m = merged.get(id)!;
    const prefillMj = (energyMj * prefillWeight * m.p) / total;
    const decodeMj = (energyMj * m.d) / total;
    shares.push({ requestId: id, energyMj: prefillMj + decodeMj, prefillMj, decodeMj, prefillTokens: m.p, decodeTokens: m.d });
  }
  return { shares, idleMj: 0 };
}

/** Options of the prefill-energy rule: costs that grow with context (see `decodeContextWeights`, `prefillCtxTokensOf`). */
export interface ContextCosts {
  /** K: context tokens whose KV reads cost as much as a decode step's fixed part (`decodeStepCtxTokensOf`). */
  decodeStepCtxTokens?: number;
  /**
   * Prefill: a token at position x costs ∝ Kp + x (its GEMMs, and attention over the x tokens before
   * it: `prefillCtxTokensOf`); `calibrationPosition` is the mean position of the calibration's prefill
   * tokens (a burst of N-token prompts: (N − 1) / 2), where a token costs `prefillMjPerToken`.
   */
  prefillCtx?: { k: number; calibrationPosition: number };
}

/**
 * The prefill-energy rule: a prefill token costs a fixed energy (`prefillMjPerToken`, mJ, all GPUs
 * of the instance) — prefill is compute-bound, so its energy per token hardly depends on what else
 * runs — and the decode tokens share what is left of the window, by count. A decode token's cost is
 * not fixed: a decode step reads all weights once for the whole batch, so its cost per token falls
 * as the batch grows, and the window's remainder is exactly that amortized cost. Prefill never takes
 * more than the window; a window without decode tokens goes to its prefills alone. Pure, with the
 * invariants of `attributeWindow` (conservation, no negative share, order independence).
 *
 * With `costs.decodeStepCtxTokens`, the decode tokens share the rest by their cost, not their
 * count: a step's fixed part per token plus the KV each token's context read (decodeContextWeights).
 * With `costs.prefillCtx`, a prefill token's cost grows with its position in the prompt (attention
 * over the tokens before it); a window where any prefill item lacks positions keeps the fixed cost.
 */
export function attributeWindowPrefillEnergy(energyMj: number, requests: readonly WorkItem[], prefillMjPerToken: number, costs: ContextCosts = {}): WindowAttribution {
  if (!(energyMj >= 0)) throw new RangeError(`window energy must be ≥ 0, got ${energyMj}`);
  if (!(prefillMjPerToken >= 0)) throw new RangeError(`prefill energy per token must be ≥ 0, got ${prefillMjPerToken}`);
  const k = costs.decodeStepCtxTokens;
  if (k !== undefined && !(k > 0)) throw new RangeError(`decode step context tokens must be > 0, got ${k}`);
  const pk = costs.prefillCtx;
  if (pk !== undefined && !(pk.k > 0 && pk.calibrationPosition >= 0)) throw new RangeError(`prefill context: k must be > 0 and the calibration position ≥ 0, got ${pk.k}, ${pk.calibrationPosition}`);
  const { merged, ids } = mergeByRequest(requests);
  let p = 0;
  let d = 0;
  let noPrefillCtx = false;
  for (const id of ids) {
    const m = merged.get(id)!;
    p += m.p;
    d += m.d;
    noPrefillCtx ||= m.noPrefillCtx;
  }
  if (p + d <= 0) return { shares: [], idleMj: energyMj };
  // Prefill tokens weighted by their cost relative to the calibration's (1 without positions).
  const pw = (m: Merged) => (pk && !noPrefillCtx ? (m.p + m.pc / pk.k) / (1 + pk.calibrationPosition / pk.k) : m.p);
  let pWeight = 0;
  for (const id of ids) pWeight += pw(merged.get(id)!);
  const prefillTotal = d > 0 ? Math.min(energyMj, prefillMjPerToken * pWeight) : energyMj;
  const decodeTotal = energyMj - prefillTotal;
  const weight = k !== undefined ? decodeContextWeights(merged, ids, k) : undefined;
  const shares: Share[] = [];
  for (const id of ids) {
    const m = merged.get(id)!;
    const prefillMj = pWeight > 0 ? (prefillTotal * pw(m)) / pWeight : 0;
    const decodeMj = weight ? (decodeTotal * weight.of(m)) / weight.total : d > 0 ? (decodeTotal * m.d) / d : 0;
    shares.push({ requestId: id, energyMj: prefillMj + decodeMj, prefillMj, decodeMj, prefillTokens: m.p, decodeTokens: m.d });
  }
  return { shares, idleMj: 0 };
}

/**
 * The context-aware decode split. A decode step costs (reading the weights, launching the step: the
 * same whatever the batch, shared by its tokens) + (each sequence reading its own KV cache: ∝ its
 * context). `decodeStepCtxTokens` (K) is the first in units of the second: how many context tokens'
 * KV reads cost as much as a step's fixed part. Both are HBM reads of a memory-bound step, so K ≈
 * weight bytes ÷ KV bytes per token (per GPU both, so TP cancels): `decodeStepCtxTokensOf`.
 *
 * In a window with S decode steps the decode energy is ∝ S·K + Σ ctx, and request i's part is
 * d_i·(S·K / D) + ctx_i (D = Σ d_i: the fixed part per decode token, the step's batch sharing it).
 * S is not observed; every request decoding through the whole window gets a token a step, so S ≈
 * max d_i. When every decode token has the same context c, the weights are d_i·(S·K/D + c) ∝ d_i:
 * the count split. A window where any decode item lacks its context (an agent that does not report
 * it) falls back to the count split, as does one whose weights are all 0.
 */
function decodeContextWeights(merged: ReadonlyMap<string, Merged>, ids: readonly string[], k: number): { of: (m: { d: number; c: number }) => number; total: number } | undefined {
  let d = 0;
  let c = 0;
  let steps = 0;
  for (const id of ids) {
    const m = merged.get(id)!;
    if (m.noCtx) return undefined;
    d += m.d;
    c += m.c;
    steps = Math.max(steps, m.d);
  }
  if (!(d > 0) || !(c > 0)) return undefined;
  const perToken = (steps * k) / d;
  const of = (m: { d: number; c: number }) => (m.d > 0 ? m.d * perToken + m.c : 0);
  let total = 0;
  for (const id of ids) total += of(merged.get(id)!);
  return total > 0 ? { of, total } : undefined;
}

/**
 * Kp of `ContextCosts.prefillCtx` from a model's config: a prefill token's GEMMs are 2 × active params
 * FLOPs, its attention over x earlier tokens 4 × layers × d_model × x (QKᵀ and PV), so its cost is ∝
 * Kp + x with Kp = active params / (2 × layers × d_model). Llama 3.1 70B: ≈ 53.9 k.
 */
export function prefillCtxTokensOf(m: { params: number; activeParams?: number; layers: number; dModel: number }): number {
  return (m.activeParams ?? m.params) / (2 * m.layers * m.dModel);
}

/**
 * K of `attributeWindowPrefillEnergy` from a model's config (what an operator reads in its
 * config.json): weight bytes ÷ KV bytes per token = params / (2 × layers × kv_heads × head_dim) when
 * weights and KV cache have the same dtype. Llama 3.1 70B: 70.6e9 / (2·80·8·128) ≈ 431 k tokens.
 */
export function decodeStepCtxTokensOf(m: { params: number; layers: number; kvHeads: number; headDim: number; weightBytes?: number; kvBytes?: number }): number {
  return (m.params * (m.weightBytes ?? 2)) / (2 * m.layers * m.kvHeads * m.headDim * (m.kvBytes ?? 2));
}

/**
 * A window's static energy — the GPUs' idle power over the window (`staticMj`, capped at what was
 * attributed) — apart from each share's active energy: each request's part of it is its part of the
 * window's attributed energy, so a request that ran the window alone carries all of it and a request
 * in a batch of 100 a hundredth. Returns, per share in order, the static part of its `energyMj`
 * (0 ≤ static ≤ energyMj; Σ = min(staticMj, Σ energyMj)). Pure.
 *
 * Static power is what the GPUs draw doing nothing (leakage, memory refresh, fans of the board): it
 * is not caused by any request, but it is the price of the time they held the GPUs. Reported apart,
 * an operator can tell the energy a request's work cost from the energy of the time it was served in.
 */
export function staticParts(shares: readonly Pick<Share, "energyMj">[], staticMj: number): number[] {
  if (!(staticMj >= 0)) throw new RangeError(`static energy must be ≥ 0, got ${staticMj}`);
  let total = 0;
  for (const s of shares) total += s.energyMj;
  if (!(total > 0)) return shares.map(() => 0);
  const s = Math.min(staticMj, total);
  return shares.map((sh) => Math.min(sh.energyMj, (s * sh.energyMj) / total));
}
