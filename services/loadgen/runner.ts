import { setMaxListeners } from "node:events";
import type { LoadResult } from "../../shared/messages/load.ts";
import { systemClock, type Clock } from "../../shared/units.ts";
import { assertToken } from "../../shared/subjects.ts";
import { ConfigError } from "../../shared/errors.ts";
import { exactGapSummary } from "./histogram.ts";
import { API_PATHS, DEFAULT_CHARS_PER_TOKEN, DEFAULT_CHAT_OVERHEAD_TOKENS, requestBody, type Api, type PromptMode } from "./request-body.ts";
import { createStreamClient, type StreamOutcome } from "./stream-client.ts";
import { createAggregator, type LoadSummary, type Slo } from "./summary.ts";
import { waitUntil } from "./wait.ts";
import type { WorkloadRequest } from "./workload.ts";

export interface RunLoadOptions {
  source: AsyncIterable<WorkloadRequest>;
  /** Base URLs (`http://127.0.0.1:8001`); request i goes to targets[i mod n]. */
  targets: string[];
  api?: Api;
  model?: string;
  runId: string;
  worker?: string;
  /** At most this many requests in flight; a request due while the cap is reached waits (its lag shows it). */
  concurrency?: number;
  /** Closed loop: ignore offsets, keep `concurrency` requests in flight back to back. */
  closedLoop?: boolean;
  /** Whole-request timeout, ms. */
  timeoutMs?: number;
  onResult?: (r: LoadResult) => void | Promise<void>;
  /** Called as each request leaves (progress). */
  onSent?: (w: WorkloadRequest) => void;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** Only requests with index ≡ shard.index (mod shard.count): one worker's share of a run. */
  shard?: { index: number; count: number };
  /** Epoch ms of offset 0 (workers of one run share it); default: now. */
  startAtMs?: number;
  promptMode?: PromptMode;
  charsPerToken?: number;
  chatOverheadTokens?: number;
  slo?: Slo;
  clock?: Clock;
}

export const DEFAULT_TIMEOUT_MS = 10 * 60_000;
/** Longest wait for the warm-up before time zero, ms (a target that does not answer is the run's to report). */
const WARM_UP_MS = 2000;
/** Parsing and body building run ahead of the schedule by up to this many requests. */
const LOOKAHEAD = 64;

/**
 * Sends a workload open-loop: each request leaves at its scheduled time whether or not earlier ones
 * have answered (a slow server shows as latency, not as a slower arrival rate). Resolves when every
 * sent request has finished and every `onResult` has returned; one result per request sent.
 */
export async function runLoad(opts: RunLoadOptions): Promise<LoadSummary> {
  const runId = assertToken("run", opts.runId);
  const worker = opts.worker ?? "w0";
  if (opts.targets.length === 0) throw new ConfigError("--target", "at least one target URL is needed");
  const api = opts.api ?? "completions";
  // A base URL with a path (`http://h/i/a`) keeps it: http://h/i/a/v1/completions.
  const urls = opts.targets.map((t) => {
    let base: URL;
    try {
      base = new URL(t);
    } catch {
      throw new ConfigError("--target", `not a URL: ${JSON.stringify(t)}`);
    }
    return new URL(base.pathname.replace(/\/$/, "") + API_PATHS[api], base);
  });
  // The OpenAI API's cheapest call, for warming up (a tap relays it untracked).
  const modelsUrls = urls.map((u) => new URL(u.pathname.slice(0, -API_PATHS[api].length) + "/v1/models", u));
  const clock = opts.clock ?? systemClock();
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const cap = opts.closedLoop ? Math.max(1, opts.concurrency ?? 1) : (opts.concurrency ?? Infinity);
  const bodyOpts = {
    api,
    ...(opts.model ? { model: opts.model } : {}),
    promptMode: opts.promptMode ?? (api === "chat" ? "text" : "token-ids"),
    charsPerToken: opts.charsPerToken ?? DEFAULT_CHARS_PER_TOKEN,
    chatOverheadTokens: opts.chatOverheadTokens ?? DEFAULT_CHAT_OVERHEAD_TOKENS,
  } as const;
  const client = createStreamClient(clock);
  // One internal signal for every in-flight request (each listens to it), linked to the caller's.
  const abort = new AbortController();
  setMaxListeners(0, abort.signal);
  const onCallerAbort = () => abort.abort();
  if (opts.signal?.aborted) abort.abort();
  opts.signal?.addEventListener("abort", onCallerAbort, { once: true });
  const signal = abort.signal;
  const agg = createAggregator(runId, worker, opts.slo);
  const inflight = new Set<Promise<void>>();
  let slotFreed: (() => void) | undefined;
  // The first onResult error stops the run and is thrown once the requests in flight are done
  // (left on an in-flight promise, it was an unhandled rejection that killed the process).
  let resultError: { err: unknown } | undefined;

  const complete = async (w: WorkloadRequest, target: string, scheduledMs: number, out: StreamOutcome) => {
    const r = toResult(runId, worker, w, target, scheduledMs, out);
    agg.add(r, out.gaps);
    await opts.onResult?.(r);
  };

  const prepared = prefetch(opts.source, LOOKAHEAD, opts.shard, (w) => requestBody(w, bodyOpts));
  try {
    // Before time zero: the first lookahead filled (file opened, rows parsed, bodies built) and a
    // connection open to each target with the request code run once. Done after time zero, this
    // made the first request of a run leave 14-40 ms late while the rest left within a ms.
    const warmMs = opts.startAtMs === undefined ? WARM_UP_MS : Math.min(WARM_UP_MS, Math.max(0, opts.startAtMs - clock.nowMs()));
    const [first] = await Promise.all([prepared.next(), signal.aborted ? undefined : client.warm(modelsUrls, warmMs)]);
    const startMs = opts.startAtMs ?? clock.nowMs();
    for (let next = first; !next.done; next = await prepared.next()) {
      const { w, body } = next.value;
      if (signal.aborted) break;
      while (inflight.size >= cap) {
        await new Promise<void>((r) => (slotFreed = r));
        if (signal.aborted) break;
      }
      if (signal.aborted) break;
      const scheduledMs = opts.closedLoop ? clock.nowMs() : startMs + w.offsetMs;
      const wait = waitUntil(clock, scheduledMs, signal);
      if (wait) await wait;
      if (signal.aborted) break;
      const t = w.index % urls.length;
      const headers: Record<string, string> = {
        ...opts.headers,
        "x-request-id": requestIdOf(runId, w.index),
        "x-joulestream-run": runId,
        ...(w.workloadClass ? { "x-joulestream-class": w.workloadClass } : {}),
      };
      const p: Promise<void> = client
        .send(urls[t]!, body, headers, { timeoutMs, signal })
        .then((out) => complete(w, opts.targets[t]!, scheduledMs, out))
        .catch((err: unknown) => {
          resultError ??= { err };
          abort.abort();
        })
        .finally(() => {
          inflight.delete(p);
          const f = slotFreed;
          slotFreed = undefined;
          f?.();
        });
      inflight.add(p);
      opts.onSent?.(w);
    }
  } finally {
    await prepared.return(undefined); // the source closed, as a for-await's break would
    await Promise.allSettled([...inflight]);
    client.close();
    opts.signal?.removeEventListener("abort", onCallerAbort);
  }
  // Let onResult errors surface: the caller asked to be told of every result.
  if (resultError) throw resultError.err;
  return agg.summary();
}

export const requestIdOf = (runId: string, index: number): string => `${runId}-${index}`;

function toResult(runId: string, worker: string, w: WorkloadRequest, target: string, scheduledMs: number, out: StreamOutcome): LoadResult {
  const outputTokens = out.usageOutputTokens ?? out.chunks;
  const tpotMs = out.status === "ok" && out.ttftMs !== undefined && out.e2eMs !== undefined && outputTokens > 1 ? (out.e2eMs - out.ttftMs) / (outputTokens - 1) : undefined;
  return {
    v: 1,
    kind: "load",
    msgId: `${runId}.${w.index}`,
    runId,
    worker,
    requestId: requestIdOf(runId, w.index),
    index: w.index,
    target,
    ...(w.workloadClass ? { workloadClass: w.workloadClass } : {}),
    scheduledMs,
    sentMs: out.sentMs,
    ...(out.ttftMs !== undefined ? { ttftMs: Math.max(0, out.ttftMs) } : {}),
    ...(out.e2eMs !== undefined ? { e2eMs: Math.max(0, out.e2eMs) } : {}),
    ...(tpotMs !== undefined ? { tpotMs: Math.max(0, tpotMs) } : {}),
    ...(out.gaps.length > 0 ? { itl: exactGapSummary(Float64Array.from(out.gaps)) } : {}),
    requestedPromptTokens: w.promptTokens,
    requestedOutputTokens: w.outputTokens,
    promptTokens: out.usagePromptTokens ?? 0,
    outputTokens,
    status: out.status,
    ...(out.httpStatus !== undefined ? { httpStatus: out.httpStatus } : {}),
    ...(out.error !== undefined ? { error: out.error.slice(0, 500) } : {}),
  };
}

/**
 * Pulls the source up to `depth` requests ahead and builds their bodies, yielding in order. The
 * pulling happens between sends, so a slow parse or a big body delays the schedule only when the
 * lookahead ran dry.
 */
async function* prefetch<T>(source: AsyncIterable<WorkloadRequest>, depth: number, shard: RunLoadOptions["shard"], build: (w: WorkloadRequest) => T): AsyncGenerator<{ w: WorkloadRequest; body: T }> {
  const queue: { w: WorkloadRequest; body: T }[] = [];
  const it = source[Symbol.asyncIterator]();
  let done = false;
  try {
    for (;;) {
      while (!done && queue.length < depth) {
        const n = await it.next();
        if (n.done) done = true;
        else if (!shard || n.value.index % shard.count === shard.index) queue.push({ w: n.value, body: build(n.value) });
      }
      const next = queue.shift();
      if (!next) return;
      yield next;
    }
  } finally {
    if (!done) await it.return?.();
  }
}
