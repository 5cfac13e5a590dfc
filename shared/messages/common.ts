import { z } from "zod";
import { TOKEN_RE } from "../subjects.ts";

/** Every message carries `v: 1`; a consumer that meets another version dead-letters it. */
export const V = z.literal(1);
export const token = z.string().regex(TOKEN_RE, "must be one NATS subject token ([A-Za-z0-9_-])");
/**
 * Unique per message; also sent as the Nats-Msg-Id header so the server drops re-publishes. Room for
 * a node id (128), a request id (200) and the parts between them.
 */
export const msgId = z.string().min(1).max(400);
/** The longest request id a message carries; the tap assigns its own in place of a longer client id. */
export const MAX_REQUEST_ID_CHARS = 200;
/** One LLM request's id, the same in every message about it (REQUESTS, WORK, ENERGY, LOAD). */
export const requestId = z.string().min(1).max(MAX_REQUEST_ID_CHARS);
export const nonNeg = z.number().finite().nonnegative();
/** The latest time InfluxDB can store (int64 ns, year 2262); a later one would be refused on write. */
export const MAX_EPOCH_MS = 9_223_372_036_854;
/** Epoch milliseconds, sub-millisecond resolution (float64 keeps ~0.25 µs at today's epoch). */
export const epochMs = z.number().finite().nonnegative().max(MAX_EPOCH_MS);
/** The shortest window the analyzer accepts: it walks a node's windows on this grid. */
export const MIN_WINDOW_MS = 1;
export const windowSpan = (w: { windowStartMs: number; windowEndMs: number }) => w.windowEndMs - w.windowStartMs >= MIN_WINDOW_MS;
/** What `windowSpan` says when a window fails it (`.refine(windowSpan, WINDOW_SPAN_ISSUE)`). */
export const WINDOW_SPAN_ISSUE = { message: `windowEndMs must be at least ${MIN_WINDOW_MS} ms after windowStartMs`, path: ["windowEndMs"] };
export const count = z.number().int().nonnegative();

/**
 * A column of samples: an array of finite numbers in [min, max], checked in one loop. A POWER
 * message carries thousands of them; an element-wise schema cost 30 µs per message (and a copy of
 * every array) in the analyzer, most of its decoding time. The issue names the column, not the element.
 */
export const numberColumn = (min: number, max: number, what: string) =>
  z.custom<number[]>(
    (v) => {
      if (!Array.isArray(v)) return false;
      for (const x of v) if (typeof x !== "number" || !(x >= min && x <= max)) return false;
      return true;
    },
    { message: `must be an array of ${what}` },
  );
export const nonNegColumn = numberColumn(0, Number.MAX_VALUE, "finite numbers ≥ 0");
export const epochMsColumn = numberColumn(0, MAX_EPOCH_MS, `epoch milliseconds (0 to ${MAX_EPOCH_MS})`);
export const finiteColumn = numberColumn(-Number.MAX_VALUE, Number.MAX_VALUE, "finite numbers");
