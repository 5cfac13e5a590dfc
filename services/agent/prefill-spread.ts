/**
 * Where a prompt's prefill ran, estimated from what the tap sees before the first token. The tap
 * learns that a prompt was prefilled only when its first token streams out; a long prompt prefilled
 * in chunks over seconds before that is, without this, invisible in the windows it ran in, and its
 * energy goes to whatever decoded there (docs/attribution.md). The tap does see each request arrive,
 * with its prompt's length (token ids exactly, text by chars per token), so it can estimate.
 *
 * The estimate is a single first-come-first-served server (vLLM's scheduler admits in arrival order
 * and fills each step's token budget with the oldest waiting prompts' chunks) prefilling at the
 * instance's calibrated rate, `tokensPerS` (`joulestream calibrate`: prompt tokens ÷ the time of a
 * prompt-only burst): at each window's close, the prompts still waiting for their first token are
 * taken in arrival order, none before it arrived, until the window's capacity is spent — less the
 * part of it the prompts whose first token came in the window already took. At the first token the
 * tracker adds the prompt's tokens less what was estimated before (never less than nothing), so a
 * prompt's prefill tokens in WORK add up to its length unless the estimate ran ahead of it.
 *
 * Pure state (no clock, no I/O): time comes with the calls.
 */
export interface PrefillSpread {
  /** A request arrived at `tMs` with a prompt of about `promptTokens` tokens, and may take up to `maxTokens` more. */
  arrived(requestId: string, tMs: number, promptTokens: number, maxTokens?: number): void;
  /** Its first token came: it waits no more. Returns the tokens estimated for it so far. */
  done(requestId: string): number;
  /** It ended: what it held of the KV cache is free. */
  ended(requestId: string): void;
  /**
   * The window [startMs, endMs) closes, `takenTokens` of it already prefilled by prompts whose first
   * token came in it: the estimated prefill tokens of each prompt still waiting, in this window.
   */
  close(startMs: number, endMs: number, takenTokens: number): Map<string, number>;
  /** Requests waiting for their first token. */
  readonly waiting: number;
}

interface Waiting {
  arrivalMs: number;
  promptTokens: number;
  reserve: number;
  admitted: boolean;
  estimated: number;
}

export interface PrefillSpreadOptions {
  tokensPerS: number;
  /** The engine's KV cache, tokens: a prompt waits (no prefill) until what it may need fits. */
  kvCapacityTokens?: number;
}

export function createPrefillSpread(o: PrefillSpreadOptions): PrefillSpread {
  const { tokensPerS } = o;
  if (!(tokensPerS > 0) || !Number.isFinite(tokensPerS)) throw new RangeError(`prefill rate must be > 0 tokens/s, got ${tokensPerS}`);
  const perMs = tokensPerS / 1000;
  const kvCap = o.kvCapacityTokens ?? Number.POSITIVE_INFINITY;
  // Arrival order is insertion order: the tap sees requests in the order they arrive.
  const waiting = new Map<string, Waiting>();
  /** KV held by admitted requests, tokens. */
  const holding = new Map<string, number>();
  let kvUsed = 0;
  const admit = (id: string, w: Waiting) => {
    w.admitted = true;
    holding.set(id, w.reserve);
    kvUsed += w.reserve;
  };
  return {
    arrived(id, tMs, promptTokens, maxTokens) {
      if (promptTokens > 0) waiting.set(id, { arrivalMs: tMs, promptTokens, reserve: promptTokens + (maxTokens ?? 0), admitted: false, estimated: 0 });
    },
    done(id) {
      const w = waiting.get(id);
      waiting.delete(id);
      if (w && !w.admitted) admit(id, w); // it runs: it holds its KV now
      return w?.estimated ?? 0;
    },
    ended(id) {
      waiting.delete(id);
      const r = holding.get(id);
      if (r !== undefined) {
        kvUsed -= r;
        holding.delete(id);
      }
    },
    close(startMs, endMs, takenTokens) {
      const out = new Map<string, number>();
      // The server's time cursor: what the window's first tokens already took comes first.
      let t = startMs + Math.max(0, takenTokens) / perMs;
      for (const [id, w] of waiting) {
        if (!w.admitted) {
          if (kvUsed + w.reserve > kvCap) break; // first come first served: the head waits for space
          admit(id, w);
        }
        if (t >= endMs) break;
        // The last token of the prompt is the first token's step: it stays for that window.
        const left = w.promptTokens - 1 - w.estimated;
        if (left <= 0) continue;
        const from = Math.max(t, w.arrivalMs);
        if (from >= endMs) break; // arrived after the window: those after it did too
        const n = Math.min(left, Math.floor((endMs - from) * perMs));
        if (n <= 0) continue;
        w.estimated += n;
        out.set(id, n);
        t = from + n / perMs;
      }
      return out;
    },
    get waiting() {
      return waiting.size;
    },
  };
}
