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
function mergeByRequest(requests: readonly WorkItem[]): { merged: Map<string, { p: number; d: number }>; ids: string[] } {
  const merged = new Map<string, { p: number; d: number }>();
  for (const r of requests) {
    const m = merged.get(r.requestId);
    if (m) {
      m.p += r.prefillTokens;
      m.d += r.decodeTokens;
    } else merged.set(r.requestId, { p: r.prefillTokens, d: r.decodeTokens });
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

/**
 * The prefill-energy rule: a prefill token costs a fixed energy (`prefillMjPerToken`, mJ, all GPUs
 * of the instance) — prefill is compute-bound, so its energy per token hardly depends on what else
 * runs — and the decode tokens share what is left of the window, by count. A decode token's cost is
 * not fixed: a decode step reads all weights once for the whole batch, so its cost per token falls
 * as the batch grows, and the window's remainder is exactly that amortized cost. Prefill never takes
 * more than the window; a window without decode tokens goes to its prefills alone. Pure, with the
 * invariants of `attributeWindow` (conservation, no negative share, order independence).
 */
export function attributeWindowPrefillEnergy(energyMj: number, requests: readonly WorkItem[], prefillMjPerToken: number): WindowAttribution {
  if (!(energyMj >= 0)) throw new RangeError(`window energy must be ≥ 0, got ${energyMj}`);
  if (!(prefillMjPerToken >= 0)) throw new RangeError(`prefill energy per token must be ≥ 0, got ${prefillMjPerToken}`);
  const { merged, ids } = mergeByRequest(requests);
  let p = 0;
  let d = 0;
  for (const id of ids) {
    p += merged.get(id)!.p;
    d += merged.get(id)!.d;
  }
  if (p + d <= 0) return { shares: [], idleMj: energyMj };
  const prefillTotal = d > 0 ? Math.min(energyMj, prefillMjPerToken * p) : energyMj;
  const decodeTotal = energyMj - prefillTotal;
  const shares: Share[] = [];
  for (const id of ids) {
    const m = merged.get(id)!;
    const prefillMj = p > 0 ? (prefillTotal * m.p) / p : 0;
    const decodeMj = d > 0 ? (decodeTotal * m.d) / d : 0;
    shares.push({ requestId: id, energyMj: prefillMj + decodeMj, prefillMj, decodeMj, prefillTokens: m.p, decodeTokens: m.d });
  }
  return { shares, idleMj: 0 };
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
