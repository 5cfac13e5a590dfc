/**
 * Latency distributions. A log-bucketed histogram (buckets grow by a factor of 1 + 2·relErr, the
 * value reported is the bucket's geometric middle) keeps every quantile within `relErr` relative
 * error of an exact order statistic at constant memory, like HdrHistogram; `exactSummary` sorts a
 * bounded array when every value is at hand (the gaps of one response).
 */
export interface Percentiles {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface Histogram {
  record(value: number): void;
  /** Adds every recording of `other` (same relErr) to this one. */
  merge(other: Histogram): void;
  quantile(q: number): number;
  summary(): Percentiles;
  readonly count: number;
  /** Internal state for merging and for shipping between processes. */
  state(): HistogramState;
}

export interface HistogramState {
  relErr: number;
  zeros: number;
  counts: Record<string, number>;
  sum: number;
  min: number;
  max: number;
}

/** Values at or below this are counted as zero (1 ns, in ms). */
const ZERO_MS = 1e-6;

export function createHistogram(relErr = 0.005): Histogram {
  if (!(relErr > 0 && relErr < 0.5)) throw new RangeError(`relErr must be in (0, 0.5), got ${relErr}`);
  const gamma = (1 + relErr) / (1 - relErr);
  const logGamma = Math.log(gamma);
  const counts = new Map<number, number>();
  let zeros = 0;
  let n = 0;
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;

  const keyOf = (v: number) => Math.ceil(Math.log(v) / logGamma);
  // Bucket k holds (gamma^(k-1), gamma^k]; its representative 2·gamma^k/(gamma+1) is within relErr of both ends.
  const valueOf = (k: number) => (2 * Math.pow(gamma, k)) / (gamma + 1);

  const h: Histogram = {
    get count() {
      return n;
    },
    record(value) {
      if (!Number.isFinite(value)) return;
      n++;
      sum += value;
      if (value < min) min = value;
      if (value > max) max = value;
      if (value <= ZERO_MS) zeros++;
      else {
        const k = keyOf(value);
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
    },
    merge(other) {
      const s = other.state();
      if (s.relErr !== relErr) throw new RangeError("cannot merge histograms of different relErr");
      zeros += s.zeros;
      for (const [k, c] of Object.entries(s.counts)) counts.set(Number(k), (counts.get(Number(k)) ?? 0) + c);
      const m = s.zeros + Object.values(s.counts).reduce((a, b) => a + b, 0);
      n += m;
      sum += s.sum;
      if (m > 0) {
        min = Math.min(min, s.min);
        max = Math.max(max, s.max);
      }
    },
    quantile(q) {
      if (n === 0) return 0;
      // Rank of the order statistic (nearest-rank definition), 1-based.
      const rank = Math.max(1, Math.ceil(q * n));
      if (rank <= zeros) return 0;
      let seen = zeros;
      const keys = [...counts.keys()].sort((a, b) => a - b);
      for (const k of keys) {
        seen += counts.get(k)!;
        if (seen >= rank) return Math.min(max, Math.max(min, valueOf(k)));
      }
      return max;
    },
    summary() {
      if (n === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
      return { count: n, min, mean: sum / n, p50: h.quantile(0.5), p90: h.quantile(0.9), p99: h.quantile(0.99), p999: h.quantile(0.999), max };
    },
    state() {
      return { relErr, zeros, counts: Object.fromEntries(counts), sum, min, max };
    },
  };
  return h;
}

export function histogramFromState(s: HistogramState): Histogram {
  const h = createHistogram(s.relErr);
  h.merge({ state: () => s } as Histogram);
  return h;
}

/** Exact nearest-rank quantile of an ascending array. */
export function sortedQuantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1]!;
}

/** Summary of the inter-token gaps of one response: exact, from all of them (sorted in place). */
export function exactGapSummary(gaps: Float64Array): { count: number; meanMs: number; p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number } {
  if (gaps.length === 0) return { count: 0, meanMs: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, maxMs: 0 };
  let sum = 0;
  for (let i = 0; i < gaps.length; i++) sum += gaps[i]!;
  gaps.sort();
  return {
    count: gaps.length,
    meanMs: sum / gaps.length,
    p50Ms: sortedQuantile(gaps, 0.5),
    p90Ms: sortedQuantile(gaps, 0.9),
    p99Ms: sortedQuantile(gaps, 0.99),
    maxMs: gaps[gaps.length - 1]!,
  };
}
