import type { PerfContext, StepWork } from "./perf-model.ts";
import { stepCost, type KnobSettings, type PowerParams, type StepCost } from "./power-model.ts";

/**
 * One serving instance (vLLM-like) as a discrete-event model in simulated milliseconds:
 * continuous (iteration-level) batching with at most `maxBatch` running sequences, chunked prefill
 * under a per-step token budget, FCFS admission, and a KV cache that each request reserves in full
 * (prompt + output) when admitted — so no preemption is needed and a full cache means queueing.
 * Each step's duration and power come from the perf and power models at the current knobs.
 *
 * The same object drives library mode (advance straight through a workload) and the real-time
 * server (advance to "now" on every arrival and timer). Time only moves forward: callers call
 * `advanceTo(t)` before `submit(r, t)`.
 */
export interface EngineRequest {
  id: string;
  promptTokens: number;
  /** Tokens this request will generate (decided by the caller: max_tokens, EOS draw, min_tokens). */
  outputTokens: number;
  /** Opaque caller data, handed back in events. */
  tag?: unknown;
}

export interface RequestState {
  req: EngineRequest;
  arrivalMs: number;
  admitMs: number;
  prefilled: number;
  generated: number;
  firstTokenMs: number;
  /** Prefill tokens planned for the step in flight (0 = decoding). */
  chunk: number;
  /** Set by cancel(): the request left (client gone); it holds no slot or KV any more. */
  cancelled?: boolean;
}

/** What one sequence did in a step: the parts of `StepWork` that are its own (for the energy ledger). */
export interface SeqWork {
  state: RequestState;
  /** Prompt tokens of its prefill chunk in this step (0 = it decoded one token). */
  prefillTokens: number;
  /** Prompt tokens already prefilled before this chunk (its chunk attends to them). */
  prefillStart: number;
  /** Context whose KV its decode read (0 for a prefill chunk). */
  decodeCtxTokens: number;
}

export interface CompletedStep {
  startMs: number;
  endMs: number;
  cost: StepCost;
  work: StepWork;
  /** Every sequence of the step with its own work, cancelled ones too (the step spent energy on them). */
  seqs: SeqWork[];
  /** Requests that got a token at `endMs` (their `generated` already counts it). */
  emitted: RequestState[];
  /** Requests that finished at `endMs` (a subset of `emitted`). */
  finished: RequestState[];
}

export interface EngineOptions {
  perf: PerfContext;
  power: PowerParams;
  knobs: () => KnobSettings;
  maxBatch: () => number;
  /** Per-step token budget (vLLM max_num_batched_tokens; V1 default 8192 on ≥70 GiB GPUs). */
  maxBatchedTokens: number;
  kvCapacityTokens: number;
  /** Model context window: prompt + output beyond it is refused (as vLLM does). */
  maxContextTokens: number;
  onStep: (step: CompletedStep) => void;
  /** Called when a step starts (power level changes). */
  onStepStart?: (startMs: number, cost: StepCost) => void;
}

export interface InstanceEngine {
  submit(req: EngineRequest, tMs: number): RequestState;
  /** Drops a queued or running request (as vLLM aborts a request whose client disconnected): its batch slot and KV reservation are freed now; a step in flight finishes without it. */
  cancel(s: RequestState): void;
  /** Completes every step ending at or before `tMs`, chaining the next steps. */
  advanceTo(tMs: number): void;
  /** End of the step in flight, or undefined when idle. */
  nextEventMs(): number | undefined;
  /** Power of the step in flight (undefined when idle) and when it started. */
  current(): { startMs: number; cost: StepCost } | undefined;
  readonly waiting: number;
  readonly running: number;
  readonly kvUsedTokens: number;
  /** Outstanding work in tokens (prefill left + decode left), for least-load routing. */
  readonly pendingTokens: number;
  readonly nowMs: number;
}

export function createInstanceEngine(o: EngineOptions): InstanceEngine {
  const waiting: RequestState[] = [];
  let waitHead = 0;
  /** Cancelled requests still in the queue (plan() skips them): not waiting, as vLLM drops an aborted one. */
  let queuedCancelled = 0;
  let running: RequestState[] = [];
  let kvUsed = 0;
  let pendingTokens = 0;
  let nowMs = 0;
  let inFlight: { startMs: number; endMs: number; cost: StepCost; work: StepWork; members: RequestState[]; seqs: SeqWork[] } | undefined;

  const reserve = (s: RequestState) => s.req.promptTokens + s.req.outputTokens;

  function plan(startMs: number): void {
    let budget = o.maxBatchedTokens;
    const members: RequestState[] = [];
    const seqs: SeqWork[] = [];
    const w: StepWork = { prefillTokens: 0, prefillAttnPairs: 0, prefillSeqs: 0, decodeSeqs: 0, decodeCtxTokens: 0 };
    const addPrefill = (s: RequestState) => {
      const chunk = Math.min(s.req.promptTokens - s.prefilled, budget);
      s.chunk = chunk;
      budget -= chunk;
      w.prefillTokens += chunk;
      w.prefillSeqs++;
      w.prefillAttnPairs += chunk * (s.prefilled + chunk / 2);
      members.push(s);
      seqs.push({ state: s, prefillTokens: chunk, prefillStart: s.prefilled, decodeCtxTokens: 0 });
    };
    // Decodes first (one token each), then unfinished prefills, then admissions — vLLM V1's order.
    for (const s of running) {
      if (s.prefilled < s.req.promptTokens) continue;
      s.chunk = 0;
      budget--;
      w.decodeSeqs++;
      w.decodeCtxTokens += s.req.promptTokens + s.generated;
      members.push(s);
      seqs.push({ state: s, prefillTokens: 0, prefillStart: 0, decodeCtxTokens: s.req.promptTokens + s.generated });
    }
    for (const s of running) if (s.prefilled < s.req.promptTokens && budget > 0) addPrefill(s);
    const maxBatch = o.maxBatch();
    while (waitHead < waiting.length && budget > 0 && running.length < maxBatch) {
      const s = waiting[waitHead]!;
      if (s.cancelled) {
        waitHead++;
        queuedCancelled--;
        continue;
      }
      if (kvUsed + reserve(s) > o.kvCapacityTokens) break; // FCFS: the head waits for KV space
      waitHead++;
      s.admitMs = startMs;
      kvUsed += reserve(s);
      running.push(s);
      addPrefill(s);
    }
    if (waitHead > 1024 && waitHead * 2 > waiting.length) {
      waiting.splice(0, waitHead);
      waitHead = 0;
    }
    if (members.length === 0) return;
    const cost = stepCost(o.perf, o.power, w, o.knobs());
    inFlight = { startMs, endMs: startMs + cost.durationMs, cost, work: w, members, seqs };
    o.onStepStart?.(startMs, cost);
  }

  function complete(): void {
    const f = inFlight!;
    inFlight = undefined;
    nowMs = f.endMs;
    const emitted: RequestState[] = [];
    const finished: RequestState[] = [];
    for (const s of f.members) {
      if (s.cancelled) continue;
      if (s.chunk > 0) {
        s.prefilled += s.chunk;
        pendingTokens -= s.chunk;
        s.chunk = 0;
        if (s.prefilled < s.req.promptTokens) continue;
        s.firstTokenMs = f.endMs;
      }
      s.generated++;
      pendingTokens--;
      emitted.push(s);
      if (s.generated >= s.req.outputTokens) finished.push(s);
    }
    if (finished.length > 0) {
      running = running.filter((s) => s.generated < s.req.outputTokens);
      for (const s of finished) kvUsed -= reserve(s);
    }
    o.onStep({ startMs: f.startMs, endMs: f.endMs, cost: f.cost, work: f.work, seqs: f.seqs, emitted, finished });
  }

  return {
    submit(req, tMs) {
      if (req.promptTokens < 1 || req.outputTokens < 1) throw new RangeError(`request ${req.id}: promptTokens and outputTokens must be ≥ 1`);
      if (req.promptTokens + req.outputTokens > o.maxContextTokens) throw new RangeError(`request ${req.id}: ${req.promptTokens + req.outputTokens} tokens exceed the model's context (${o.maxContextTokens})`);
      if (req.promptTokens + req.outputTokens > o.kvCapacityTokens) throw new RangeError(`request ${req.id}: ${req.promptTokens + req.outputTokens} tokens exceed the KV cache (${o.kvCapacityTokens})`);
      nowMs = Math.max(nowMs, tMs);
      const s: RequestState = { req, arrivalMs: tMs, admitMs: NaN, prefilled: 0, generated: 0, firstTokenMs: NaN, chunk: 0 };
      waiting.push(s);
      pendingTokens += req.promptTokens + req.outputTokens;
      if (!inFlight) plan(nowMs);
      return s;
    },
    cancel(s) {
      if (s.cancelled || s.generated >= s.req.outputTokens) return;
      s.cancelled = true;
      pendingTokens -= s.req.promptTokens - s.prefilled + s.req.outputTokens - s.generated;
      const i = running.indexOf(s);
      if (i >= 0) {
        running.splice(i, 1);
        kvUsed -= reserve(s);
      } else queuedCancelled++;
      // Still queued: plan() skips it. Either way a free slot may admit the queue's head now.
      if (!inFlight) plan(nowMs);
    },
    advanceTo(tMs) {
      while (inFlight && inFlight.endMs <= tMs) {
        complete();
        plan(nowMs);
      }
      nowMs = Math.max(nowMs, tMs);
    },
    nextEventMs: () => inFlight?.endMs,
    current: () => (inFlight ? { startMs: inFlight.startMs, cost: inFlight.cost } : undefined),
    get waiting() {
      return waiting.length - waitHead - queuedCancelled;
    },
    get running() {
      return running.length;
    },
    get kvUsedTokens() {
      return kvUsed;
    },
    get pendingTokens() {
      return pendingTokens;
    },
    get nowMs() {
      return nowMs;
    },
  };
}
