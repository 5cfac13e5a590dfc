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
 * With the engine's own queue length (`engine()`: vLLM's `vllm:num_requests_waiting`, scraped from
 * the instance's /metrics at a few Hz), admission is read, not guessed: with FCFS scheduling, of the
 * A prompts the tap saw arrive that have no first token yet, the engine runs (has admitted) the
 * oldest A − waiting. A prompt shown admitted is estimated from its arrival, or from the last scrape
 * that showed it queued. A prompt a fresh scrape (`engineFreshMs`) showed queued twice in a row —
 * held back by the KV cache, not waiting a step for the token budget — is not estimated, and none
 * behind it, until a scrape shows it admitted; any other is estimated by the KV guess, from the
 * last scrape that showed it queued, and a scrape that shows it queued takes that guess back. Stale
 * counts: the KV guess alone, as without scrapes. Requests the tap did not see (sent to the server
 * directly), or preempted back to the queue, make `waiting` larger: admission is then read late,
 * never early.
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
  /**
   * The engine, scraped at `tMs`, had `waitingRequests` requests queued (not yet admitted). Of the
   * prompts that arrived `engineLagMs` or more before it and still wait for their first token,
   * all but that many oldest-first are admitted.
   */
  engine(tMs: number, waitingRequests: number): void;
  /** Requests waiting for their first token. */
  readonly waiting: number;
}

interface Waiting {
  arrivalMs: number;
  promptTokens: number;
  reserve: number;
  admitted: boolean;
  /** When it was admitted, as far as known: its arrival, or the last scrape that showed it queued. */
  admitMs: number;
  /** The last scrape that showed it queued. */
  queuedMs?: number;
  /** The first scrape that showed it queued. */
  queuedSinceMs?: number;
  /** A scrape (or its first token) showed it admitted: no later guess takes that back. */
  confirmed?: boolean;
  estimated: number;
}

export interface PrefillSpreadOptions {
  tokensPerS: number;
  /** The engine's KV cache, tokens: a prompt waits (no prefill) until what it may need fits. */
  kvCapacityTokens?: number;
  /**
   * A prompt that reached the tap this recently before a scrape may not be in the engine's queue
   * yet (the tap forwards it, the server tokenizes it): it is not counted in that scrape, so that a
   * queued prompt is not taken as admitted. Default ENGINE_LAG_MS.
   */
  engineLagMs?: number;
  /** The engine's counts older than this at a window's close are stale: the estimate goes back to the rate and the KV guess. Default ENGINE_FRESH_MS. */
  engineFreshMs?: number;
  /**
   * A prompt token's time grows with its position x: ∝ k + x (its attention reads the x before it),
   * `tokensPerS` holding at `calibrationPosition` (the calibration burst's mean position). Kp of the
   * analyzer's --prefill-ctx-tokens (shared/energy/attribution.ts prefillCtxTokensOf). None: a flat rate.
   */
  positionCost?: { k: number; calibrationPosition: number };
}

/** See `engineLagMs`: the tap's forward and the server's tokenizing of a long prompt take milliseconds, tens for 100k tokens. */
export const ENGINE_LAG_MS = 50;
/** See `engineFreshMs`: a few missed scrapes at 4–10 Hz. */
export const ENGINE_FRESH_MS = 2000;

export function createPrefillSpread(o: PrefillSpreadOptions): PrefillSpread {
  const { tokensPerS } = o;
  if (!(tokensPerS > 0) || !Number.isFinite(tokensPerS)) throw new RangeError(`prefill rate must be > 0 tokens/s, got ${tokensPerS}`);
  const perMs = tokensPerS / 1000;
  const pc = o.positionCost;
  if (pc && !(pc.k > 0 && pc.calibrationPosition >= 0)) throw new RangeError(`position cost: k must be > 0 and the calibration position ≥ 0, got ${pc.k}, ${pc.calibrationPosition}`);
  /** Time of prompt tokens x0 … x0 + n − 1, ms. */
  const timeOf = (x0: number, n: number): number => (pc ? (n * (pc.k + x0) + (n * (n - 1)) / 2) / (pc.k + pc.calibrationPosition) : n) / perMs;
  /** How many prompt tokens from position x0 fit in `ms`: the inverse of timeOf, rounded down. */
  const tokensIn = (x0: number, ms: number): number => {
    if (!pc) return Math.floor(ms * perMs);
    const b = pc.k + x0 - 0.5;
    const n = Math.floor(-b + Math.sqrt(b * b + 2 * ms * perMs * (pc.k + pc.calibrationPosition)));
    return n > 0 && timeOf(x0, n) > ms ? n - 1 : n;
  };
  const kvCap = o.kvCapacityTokens ?? Number.POSITIVE_INFINITY;
  // Arrival order is insertion order: the tap sees requests in the order they arrive.
  const waiting = new Map<string, Waiting>();
  /** KV held by admitted requests, tokens. */
  const holding = new Map<string, number>();
  let kvUsed = 0;
  const lagMs = o.engineLagMs ?? ENGINE_LAG_MS;
  const freshMs = o.engineFreshMs ?? ENGINE_FRESH_MS;
  /** The last scrape's time (-∞: none yet). */
  let engineMs = Number.NEGATIVE_INFINITY;
  const admit = (id: string, w: Waiting, atMs: number) => {
    w.admitted = true;
    w.admitMs = Math.max(w.arrivalMs, atMs);
    holding.set(id, w.reserve);
    kvUsed += w.reserve;
  };
  /** What `id` held of the KV cache is free. */
  const free = (id: string) => {
    kvUsed -= holding.get(id) ?? 0;
    holding.delete(id);
  };
  const release = (id: string, w: Waiting) => {
    w.admitted = false;
    free(id);
  };
  return {
    arrived(id, tMs, promptTokens, maxTokens) {
      if (promptTokens > 0) waiting.set(id, { arrivalMs: tMs, promptTokens, reserve: promptTokens + (maxTokens ?? 0), admitted: false, admitMs: tMs, estimated: 0 });
    },
    done(id) {
      const w = waiting.get(id);
      waiting.delete(id);
      if (w && !w.admitted) admit(id, w, w.arrivalMs); // it runs: it holds its KV now
      return w?.estimated ?? 0;
    },
    ended(id) {
      waiting.delete(id);
      free(id);
    },
    engine(tMs, waitingRequests) {
      let seen = 0;
      for (const w of waiting.values()) if (w.arrivalMs <= tMs - lagMs) seen++;
      let admitted = seen - Math.max(0, waitingRequests);
      for (const [id, w] of waiting) {
        if (w.arrivalMs > tMs - lagMs) break;
        if (admitted > 0) {
          // Admitted after the last scrape that showed it queued (the earliest it could be), or as it arrived.
          if (!w.admitted) admit(id, w, w.queuedMs ?? w.arrivalMs);
          w.confirmed = true;
          admitted--;
        } else {
          // Queued: a guess (the KV one, between scrapes) that took it as admitted was wrong.
          if (w.admitted && !w.confirmed) release(id, w);
          w.queuedSinceMs ??= tMs;
          w.queuedMs = tMs;
        }
      }
      engineMs = Math.max(engineMs, tMs);
    },
    close(startMs, endMs, takenTokens) {
      const out = new Map<string, number>();
      const fromEngine = endMs - engineMs <= freshMs;
      // The server's time cursor: what the window's first tokens already took comes first.
      let t = startMs + Math.max(0, takenTokens) / perMs;
      for (const [id, w] of waiting) {
        if (!w.admitted) {
          // First come first served: the head waits, and all behind it — while the last fresh scrape
          // showed it queued, and one before it too (a wait for KV space, not for a step's budget), or
          // while it does not fit the KV guess. Otherwise it runs, from the last scrape that showed it queued.
          const heldBack = fromEngine && w.queuedMs === engineMs && w.queuedSinceMs !== undefined && w.queuedSinceMs < engineMs;
          if (heldBack || kvUsed + w.reserve > kvCap) break;
          admit(id, w, w.queuedMs ?? w.arrivalMs);
        }
        if (t >= endMs) break;
        // The last token of the prompt is the first token's step: it stays for that window.
        const left = w.promptTokens - 1 - w.estimated;
        if (left <= 0) continue;
        const from = Math.max(t, w.admitMs);
        if (from >= endMs) break; // arrived or admitted after the window: those after it were too
        const n = Math.min(left, tokensIn(w.estimated, endMs - from));
        if (n <= 0) continue;
        out.set(id, n);
        t = from + timeOf(w.estimated, n);
        w.estimated += n;
      }
      return out;
    },
    get waiting() {
      return waiting.size;
    },
  };
}
