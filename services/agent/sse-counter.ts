/**
 * Follows an OpenAI-style SSE stream as it passes through the tap, without changing it: counts
 * output tokens (from `usage` when the server reports it per chunk, else one per content chunk)
 * and picks up the final `usage`.
 */
export interface SseProgress {
  /** Output tokens newly seen in this chunk of bytes. */
  newTokens: number;
  /** Prompt tokens if a usage object said so. */
  promptTokens?: number;
}

export interface SseCounter {
  push(chunk: Buffer): SseProgress;
  readonly outputTokens: number;
  readonly promptTokens: number | undefined;
  readonly usageCompletionTokens: number | undefined;
  readonly done: boolean;
}

export function createSseCounter(): SseCounter {
  let buf = "";
  let outputTokens = 0;
  let promptTokens: number | undefined;
  let usageCompletion: number | undefined;
  let done = false;
  return {
    push(chunk) {
      buf = buf.length > 0 ? buf + chunk.toString("utf8") : chunk.toString("utf8");
      let newTokens = 0;
      let seenPrompt: number | undefined;
      let from = 0;
      for (let nl = buf.indexOf("\n"); nl >= 0; from = nl + 1, nl = buf.indexOf("\n", from)) {
        if (!buf.startsWith("data:", from)) continue;
        const data = buf.slice(from + 5, nl).trim();
        if (data === "[DONE]") {
          done = true;
          continue;
        }
        // Per-chunk usage, the common case with vLLM's continuous_usage_stats: read the numbers
        // without parsing the event (a raw `"usage":{` can only be a key: quotes in strings are escaped).
        const fast = usageOf(data);
        let ev: { choices?: { text?: string; delta?: { content?: string | null; reasoning_content?: string | null; tool_calls?: unknown } }[]; usage?: { prompt_tokens?: number; completion_tokens?: number } | null };
        if (fast) ev = { usage: fast };
        else {
          try {
            ev = JSON.parse(data);
          } catch {
            continue;
          }
        }
        const u = ev.usage;
        if (u && typeof u.completion_tokens === "number") {
          // Per-chunk usage (vLLM continuous_usage_stats) is exact, even for multi-token chunks.
          // Cumulative: whatever chunks were counted before the first usage object are included.
          const delta = u.completion_tokens - outputTokens;
          usageCompletion = u.completion_tokens;
          if (typeof u.prompt_tokens === "number") seenPrompt = promptTokens = u.prompt_tokens;
          if (delta > 0) {
            newTokens += delta;
            outputTokens += delta;
          }
          continue;
        }
        const c = ev.choices?.[0];
        const hasToken = c !== undefined && ((c.text !== undefined && c.text !== "") || !!c.delta?.content || !!c.delta?.reasoning_content || !!c.delta?.tool_calls);
        if (hasToken && usageCompletion === undefined) {
          newTokens++;
          outputTokens++;
        }
      }
      buf = from > 0 ? buf.slice(from) : buf;
      return seenPrompt === undefined ? { newTokens } : { newTokens, promptTokens: seenPrompt };
    },
    get outputTokens() {
      return outputTokens;
    },
    get promptTokens() {
      return promptTokens;
    },
    get usageCompletionTokens() {
      return usageCompletion;
    },
    get done() {
      return done;
    },
  };
}

const USAGE_KEY = '"usage":{';
const COMPLETION = /"completion_tokens":\s*(\d+)/;
const PROMPT = /"prompt_tokens":\s*(\d+)/;

/** The usage numbers of an event that carries them, read without parsing it; else undefined. */
function usageOf(data: string): { prompt_tokens?: number; completion_tokens: number } | undefined {
  const at = data.indexOf(USAGE_KEY);
  if (at < 0) return undefined;
  const body = data.slice(at + USAGE_KEY.length, data.indexOf("}", at));
  const c = COMPLETION.exec(body);
  if (!c) return undefined;
  const p = PROMPT.exec(body);
  return p ? { prompt_tokens: Number(p[1]), completion_tokens: Number(c[1]) } : { completion_tokens: Number(c[1]) };
}

/**
 * Removes the usage-only event (`"choices":[]`) the tap asked for on a client's behalf, at SSE
 * event boundaries, whatever the server's write sizes: an event may span reads and a read may hold
 * several events (the last token, the usage, `[DONE]`). Bytes go through untouched when a read holds
 * whole events and no usage-only one, which is how servers write; only a partial trailing event is
 * held back until its end arrives (a client cannot use half an event anyway).
 */
export interface UsageFilter {
  /** The bytes to pass on for this read (possibly empty). */
  push(chunk: Buffer): Buffer;
  /** What is held back at the end of the stream (an unterminated last event). */
  end(): Buffer;
}

const USAGE_ONLY = Buffer.from('"choices":[]');

export function createUsageFilter(): UsageFilter {
  let pending: Buffer | undefined;
  /** Index just past the next event separator (a blank line, LF or CRLF) at or after `from`, or -1. */
  const nextEventEnd = (buf: Buffer, from: number): number => {
    for (let i = buf.indexOf(0x0a, from); i >= 0; i = buf.indexOf(0x0a, i + 1)) {
      if (buf[i + 1] === 0x0a) return i + 2;
      if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 3;
    }
    return -1;
  };
  const endsWithSeparator = (buf: Buffer) => buf.length >= 2 && buf[buf.length - 1] === 0x0a && (buf[buf.length - 2] === 0x0a || (buf[buf.length - 2] === 0x0d && buf[buf.length - 3] === 0x0a));
  return {
    push(chunk) {
      if (!pending && !chunk.includes(USAGE_ONLY) && endsWithSeparator(chunk)) return chunk;
      const buf = pending ? Buffer.concat([pending, chunk]) : chunk;
      const keep: Buffer[] = [];
      let start = 0;
      for (let end = nextEventEnd(buf, 0); end >= 0; end = nextEventEnd(buf, start)) {
        const ev = buf.subarray(start, end);
        if (!ev.includes(USAGE_ONLY)) keep.push(ev);
        start = end;
      }
      pending = start < buf.length ? buf.subarray(start) : undefined;
      return keep.length === 1 ? keep[0]! : Buffer.concat(keep);
    },
    end() {
      const rest = pending && !pending.includes(USAGE_ONLY) ? pending : Buffer.alloc(0);
      pending = undefined;
      return rest;
    },
  };
}
