import { workMessage, type InstanceInfo, type WorkItem, type WorkWindow } from "../../shared/mod.ts";
import { createPrefillSpread, type PrefillSpread } from "./prefill-spread.ts";

/**
 * Counts, per instance, the prefill and decode tokens each request processed in the current
 * window. The sampler calls `closeWindow` at each power-window boundary, so WORK and POWER windows
 * share their edges. Every instance gets a WORK message for every window, empty or not.
 *
 * With `prefillTokensPerS` (the instance's calibrated prefill rate), the prompts still waiting for
 * their first token get an estimate of the prefill they had in each window (prefill-spread.ts),
 * marked `awaitingFirstToken`; the first token then brings the rest of the prompt. Without it, a
 * prompt's tokens all count in the window of its first token. With the engine's queue length as
 * well (`engine()`, from the server's /metrics: engine-metrics.ts), only the prompts the engine has
 * admitted are estimated.
 */
export interface WorkTracker {
  /** A request arrived (at `tMs`, with a prompt of about `promptTokens`: what the spread needs). */
  started(instance: string, requestId: string, tMs?: number, promptTokens?: number, maxTokens?: number): void;
  prefill(instance: string, requestId: string, tokens: number): void;
  decode(instance: string, requestId: string, tokens: number): void;
  ended(instance: string, requestId: string): void;
  /** The instance's engine, scraped at `tMs`: requests it runs and requests it queues. */
  engine(instance: string, tMs: number, counts: EngineCounts): void;
  closeWindow(windowStartMs: number, windowEndMs: number): WorkWindow[];
}

/** vLLM's scheduler gauges: `vllm:num_requests_running`, `vllm:num_requests_waiting`. */
export interface EngineCounts {
  running: number;
  waiting: number;
}

export interface WorkTrackerOptions {
  /** Prompt tokens an instance prefills a second (`joulestream calibrate`); none: no estimate before the first token. */
  prefillTokensPerS?: number;
  /** The engine's KV cache per instance, tokens: with it, a prompt is not estimated to prefill before its tokens and max_tokens fit. */
  kvCapacityTokens?: number;
  /** How long before a scrape a prompt must have reached the tap to count in it (prefill-spread.ts ENGINE_LAG_MS). */
  engineLagMs?: number;
  /** A prompt token's prefill time grows with its position (prefill-spread.ts positionCost). */
  prefillPositionCost?: { k: number; calibrationPosition: number };
}

interface Open {
  prefill: number;
  decode: number;
  /** Σ of the decode tokens' contexts (WorkItem.decodeCtxTokens). */
  ctx: number;
  /** Σ of the prefill tokens' positions in their prompt (WorkItem.prefillCtxTokens). */
  prefillCtx: number;
}

/** What a request's next decode token attends to: its prompt and the tokens it generated so far. */
interface Context {
  prompt: number;
  generated: number;
  /** The first token came: `prompt` is its count, no longer the arrival's estimate. */
  prefilled: boolean;
  /** Prompt tokens counted as prefill so far, estimated or not: the next one's position. */
  position: number;
}

interface InstanceState {
  current: Map<string, Open>;
  inFlight: Set<string>;
  spread?: PrefillSpread;
  /** Prefill tokens estimated before the first token and not yet taken off what it brings. */
  credit: Map<string, number>;
  /** Prefill tokens the window's first tokens brought: server time the spread cannot give others. */
  taken: number;
  context: Map<string, Context>;
}

export function createWorkTracker(node: string, instances: readonly InstanceInfo[], opts: WorkTrackerOptions = {}): WorkTracker {
  const state = new Map<string, InstanceState>();
  for (const inst of instances) {
    state.set(inst.id, { current: new Map(), inFlight: new Set(), credit: new Map(), taken: 0, context: new Map(), ...(opts.prefillTokensPerS !== undefined ? { spread: createPrefillSpread({ tokensPerS: opts.prefillTokensPerS, ...(opts.kvCapacityTokens !== undefined ? { kvCapacityTokens: opts.kvCapacityTokens } : {}), ...(opts.engineLagMs !== undefined ? { engineLagMs: opts.engineLagMs } : {}), ...(opts.prefillPositionCost ? { positionCost: opts.prefillPositionCost } : {}) }) } : {}) });
  }
  const of = (instance: string): InstanceState => {
    const s = state.get(instance);
    if (!s) throw new RangeError(`unknown instance ${instance}`);
    return s;
  };
  const entry = (s: InstanceState, requestId: string): Open => {
    let e = s.current.get(requestId);
    if (!e) s.current.set(requestId, (e = { prefill: 0, decode: 0, ctx: 0, prefillCtx: 0 }));
    return e;
  };
  /** The request's context, as far as known (none yet: a request the tap saw no start of). */
  const contextOf = (s: InstanceState, requestId: string): Context => {
    let c = s.context.get(requestId);
    if (!c) s.context.set(requestId, (c = { prompt: 0, generated: 0, prefilled: false, position: 0 }));
    return c;
  };
  /** `n` more of a prompt's tokens prefilled in this window, after those counted before (their positions). */
  const addPrefill = (s: InstanceState, requestId: string, n: number): void => {
    const e = entry(s, requestId);
    const c = contextOf(s, requestId);
    e.prefill += n;
    e.prefillCtx += n * c.position + (n * (n - 1)) / 2;
    c.position += n;
  };
  return {
    started(instance, requestId, tMs, promptTokens, maxTokens) {
      const s = state.get(instance);
      if (!s) return;
      s.inFlight.add(requestId);
      s.context.set(requestId, { prompt: promptTokens ?? 0, generated: 0, prefilled: false, position: 0 });
      if (s.spread && tMs !== undefined && promptTokens !== undefined) s.spread.arrived(requestId, tMs, promptTokens, maxTokens);
    },
    prefill(instance, requestId, tokens) {
      if (tokens <= 0) return;
      const s = of(instance);
      // The first token's prompt count replaces the arrival's estimate; a later correction adds to it.
      const c = s.context.get(requestId);
      if (!c) s.context.set(requestId, { prompt: tokens, generated: 0, prefilled: true, position: 0 });
      else if (!c.prefilled) Object.assign(c, { prompt: tokens, prefilled: true });
      else c.prompt += tokens;
      if (s.spread) {
        const est = s.spread.done(requestId);
        if (est > 0) s.credit.set(requestId, (s.credit.get(requestId) ?? 0) + est);
      }
      const credit = s.credit.get(requestId) ?? 0;
      const off = Math.min(credit, tokens);
      if (credit > 0) s.credit.set(requestId, credit - off);
      if (tokens - off > 0) {
        addPrefill(s, requestId, tokens - off);
        s.taken += tokens - off;
      }
    },
    decode(instance, requestId, tokens) {
      if (tokens <= 0) return;
      const s = of(instance);
      const e = entry(s, requestId);
      e.decode += tokens;
      // Token j of these (0-based) follows the first token and `generated` decode tokens before it.
      const c = contextOf(s, requestId);
      const before = c.prompt + 1 + c.generated;
      e.ctx += tokens * before + (tokens * (tokens - 1)) / 2;
      c.generated += tokens;
    },
    ended(instance, requestId) {
      const s = state.get(instance);
      if (!s) return;
      s.inFlight.delete(requestId);
      s.spread?.ended(requestId);
      s.credit.delete(requestId);
      s.context.delete(requestId);
    },
    engine(instance, tMs, counts) {
      // Only the queue's length is used: with FCFS it says which prompts were admitted (prefill-spread.ts).
      state.get(instance)?.spread?.engine(tMs, counts.waiting);
    },
    closeWindow(windowStartMs, windowEndMs) {
      const out: WorkWindow[] = [];
      for (const inst of instances) {
        const s = state.get(inst.id)!;
        const awaiting = s.spread?.close(windowStartMs, windowEndMs, s.taken);
        for (const [id, n] of awaiting ?? []) addPrefill(s, id, n);
        const m = s.current;
        s.current = new Map();
        s.taken = 0;
        out.push(
          workMessage({
            node,
            instance: inst.id,
            gpus: inst.gpus,
            ...(inst.model ? { model: inst.model } : {}),
            windowStartMs,
            windowEndMs,
            requests: [...m].map(([requestId, w]): WorkItem => ({ requestId, prefillTokens: w.prefill, decodeTokens: w.decode, ...(w.prefill > 0 ? { prefillCtxTokens: w.prefillCtx } : {}), ...(w.decode > 0 ? { decodeCtxTokens: w.ctx } : {}), ...(awaiting?.has(requestId) ? { awaitingFirstToken: true } : {}) })),
            inFlight: s.inFlight.size,
          }),
        );
      }
      return out;
    },
  };
}
