import { classify } from "../../shared/workload-classes.ts";
import { createRng } from "../../shared/rng.ts";
import { TraceError, type ParseOptions } from "./trace-error.ts";
import type { TraceRow } from "./trace-row.ts";
import type { WorkloadRequest } from "./workload.ts";

/** How a recorded trace becomes a workload. Times in the trace's own ms unless noted. */
export interface TraceOptions extends ParseOptions {
  /** Replay this many times faster (2 = twice the rate, half the duration). */
  speedup?: number;
  /** Skip the first `fromMs` of the trace (relative to its first row). */
  fromMs?: number;
  /** Keep only rows within `windowMs` after `fromMs`. */
  windowMs?: number;
  /** At most this many requests. */
  limit?: number;
  /** Keep each row with this probability (seeded, reproducible). */
  sample?: number;
  seed?: number;
  /** Caps on the lengths asked for (a 4K-context model cannot take the trace's 40K prompts). */
  maxPromptTokens?: number;
  maxOutputTokens?: number;
  /** Rows asking for 0 output tokens become 1 (a server cannot stream nothing). Default on. */
  minOutputTokens?: number;
}

/** More prompt tokens than any model takes, and than a request body can hold (V8 strings stop at ~2^29 chars). */
export const MAX_TRACE_PROMPT_TOKENS = 10_000_000;

/**
 * Turns trace rows into requests: offsets relative to the first row (or the window's start),
 * divided by the speed-up; indices dense from 0 in row order after filtering, so a run's requests
 * are exactly 0..n-1. Timestamps must not go back: strict parsing rejects a row that does; lenient
 * parsing sends it at the previous row's time.
 */
export async function* toWorkload(rows: AsyncIterable<TraceRow>, file: string, opts: TraceOptions = {}): AsyncGenerator<WorkloadRequest> {
  const speedup = opts.speedup ?? 1;
  if (!(speedup > 0)) throw new RangeError(`speedup must be > 0, got ${speedup}`);
  const rng = opts.sample !== undefined ? createRng(opts.seed ?? 1) : undefined;
  const fromMs = opts.fromMs ?? 0;
  const minOut = opts.minOutputTokens ?? 1;
  let originMs: number | undefined;
  let prevMs = -Infinity;
  let index = 0;
  for await (const row of rows) {
    let tMs = row.tMs;
    if (tMs < prevMs) {
      const err = new TraceError(file, row.line, `timestamp goes back by ${(prevMs - tMs).toFixed(3)} ms; traces must be in time order`);
      if (!opts.lenient) throw err;
      opts.onSkip?.(err);
      tMs = prevMs;
    }
    if (row.promptTokens > MAX_TRACE_PROMPT_TOKENS && (opts.maxPromptTokens ?? Infinity) > MAX_TRACE_PROMPT_TOKENS) {
      const err = new TraceError(file, row.line, `${row.promptTokens} prompt tokens is more than ${MAX_TRACE_PROMPT_TOKENS}: not a real request (cap it with --max-prompt-tokens)`);
      if (!opts.lenient) throw err;
      opts.onSkip?.(err);
      continue;
    }
    prevMs = tMs;
    originMs ??= tMs;
    const rel = tMs - originMs - fromMs;
    if (rel < 0) continue;
    if (opts.windowMs !== undefined && rel >= opts.windowMs) return;
    if (rng && rng.next() >= opts.sample!) continue;
    if (opts.limit !== undefined && index >= opts.limit) return;
    // A 0-token prompt is an empty prompt, which servers reject (400): ask for 1, as for outputs.
    const promptTokens = Math.max(1, Math.min(row.promptTokens, opts.maxPromptTokens ?? Infinity));
    const outputTokens = Math.max(minOut, Math.min(row.outputTokens, opts.maxOutputTokens ?? Infinity));
    yield {
      index: index++,
      offsetMs: rel / speedup,
      promptTokens,
      outputTokens,
      workloadClass: classify(promptTokens, outputTokens),
      ...(row.hashIds ? { hashIds: row.hashIds } : {}),
    };
  }
}

/** Count, span and mean rate of a trace (one streaming pass), to rescale it to a target rate. */
export async function traceStats(rows: AsyncIterable<TraceRow>): Promise<{ rows: number; spanMs: number; ratePerS: number; promptTokens: number; outputTokens: number }> {
  let n = 0, first = Infinity, last = -Infinity, promptTokens = 0, outputTokens = 0;
  for await (const r of rows) {
    n++;
    first = Math.min(first, r.tMs);
    last = Math.max(last, r.tMs);
    promptTokens += r.promptTokens;
    outputTokens += r.outputTokens;
  }
  const spanMs = n > 1 ? last - first : 0;
  return { rows: n, spanMs, ratePerS: spanMs > 0 ? ((n - 1) * 1000) / spanMs : 0, promptTokens, outputTokens };
}
