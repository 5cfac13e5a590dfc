import { readFileSync } from "node:fs";
import type { WorkloadRequest } from "./library.ts";
import { createRng } from "./rng.ts";

/**
 * Workloads for library mode: the Azure LLM inference trace format and the paper's nine workload
 * classes (input × output length, short/medium/long) as seeded synthetic Poisson arrivals.
 */

/** Parses `TIMESTAMP,ContextTokens,GeneratedTokens` rows (timestamps like `2023-11-16 18:15:46.6805900`, UTC). */
export function parseAzureTrace(text: string, opts: { startMs?: number; durationMs?: number; speedup?: number } = {}): WorkloadRequest[] {
  const out: WorkloadRequest[] = [];
  const speedup = opts.speedup ?? 1;
  let t0: number | undefined;
  let row = 0;
  for (const line of text.split("\n")) {
    row++;
    if (row === 1 || line.trim() === "") continue;
    const [ts, ctx, gen] = line.split(",");
    const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?/.exec(ts ?? "");
    if (!m) throw new RangeError(`trace row ${row}: bad timestamp "${ts}"`);
    const frac = m[7] ? Number(`0.${m[7]}`) * 1000 : 0;
    const tMs = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) + frac;
    t0 ??= tMs;
    const rel = tMs - t0 - (opts.startMs ?? 0);
    if (rel < 0) continue;
    if (opts.durationMs !== undefined && rel >= opts.durationMs) break;
    const promptTokens = Number(ctx);
    const outputTokens = Number(gen);
    if (!(promptTokens >= 1) || !(outputTokens >= 1)) continue; // zero-length rows cannot be served
    out.push({ id: `row${row}`, arrivalMs: rel / speedup, promptTokens, outputTokens });
  }
  return out;
}

export const loadAzureTrace = (path: string, opts?: Parameters<typeof parseAzureTrace>[1]): WorkloadRequest[] => parseAzureTrace(readFileSync(path, "utf8"), opts);

export type LengthClass = "short" | "medium" | "long";
export type WorkloadClass = `${LengthClass}-${LengthClass}`;
export const LENGTH_CLASSES: readonly LengthClass[] = ["short", "medium", "long"];
export const WORKLOAD_CLASSES: readonly WorkloadClass[] = LENGTH_CLASSES.flatMap((i) => LENGTH_CLASSES.map((o) => `${i}-${o}` as WorkloadClass));

/**
 * Median tokens of each class on the Azure 2023 conversation trace, classes cut at its 33rd/66th
 * percentiles (input 408 / 1,102, output 94 / 237 tokens — PAPER.md, DynamoLLM's method).
 */
export const CLASS_MEDIAN_TOKENS = { input: { short: 376, medium: 1018, long: 1510 }, output: { short: 71, medium: 129, long: 407 } } as const;

export interface PoissonOptions {
  ratePerS: number;
  durationS: number;
  cls: WorkloadClass;
  seed: number;
  /** Log-normal spread around the class median (σ of ln); 0 = every request at the median. Default 0.25. */
  spread?: number;
}

/** Seeded Poisson arrivals of one workload class. */
export function poissonClassWorkload(o: PoissonOptions): WorkloadRequest[] {
  const rng = createRng(o.seed);
  const [i, out] = o.cls.split("-") as [LengthClass, LengthClass];
  const sigma = o.spread ?? 0.25;
  const draw = (median: number) => Math.max(1, Math.round(median * Math.exp(sigma * rng.normal())));
  const w: WorkloadRequest[] = [];
  for (let t = 0, k = 0; ; k++) {
    t += (-Math.log(1 - rng.next()) / o.ratePerS) * 1000;
    if (t >= o.durationS * 1000) break;
    w.push({ id: `${o.cls}-${k}`, arrivalMs: t, promptTokens: draw(CLASS_MEDIAN_TOKENS.input[i]), outputTokens: draw(CLASS_MEDIAN_TOKENS.output[out]) });
  }
  return w;
}

/**
 * `n` requests all arriving at t = 0 with log-normal lengths: a saturating, closed-batch load
 * for steady-state measurements at a given max batch (ML.ENERGY-style).
 */
export function burstWorkload(n: number, o: { promptMedian: number; outputMedian: number; seed: number; spread?: number }): WorkloadRequest[] {
  const rng = createRng(o.seed);
  const sigma = o.spread ?? 0.5;
  const draw = (median: number) => Math.max(1, Math.round(median * Math.exp(sigma * rng.normal())));
  return Array.from({ length: n }, (_, k) => ({ id: `b${k}`, arrivalMs: 0, promptTokens: Math.min(4000, draw(o.promptMedian)), outputTokens: Math.min(2000, draw(o.outputMedian)) }));
}
