import { MAX_LINE_BYTES } from "./sse-counter.ts";

/**
 * Takes out of a stream what the tap's own `stream_options` added to it, so that the client gets
 * what the server would have sent it: the tap asks for usage (it records tokens from it), the client
 * may not have. Works at SSE event boundaries, whatever the server's write sizes: an event may span
 * reads and a read may hold several events (the last token, the usage, `[DONE]`). A read that holds
 * whole events and nothing to take out goes through as the same buffer; only a partial trailing event
 * is held back until its end arrives (a client cannot use half an event anyway). An event that
 * changes is spliced, never parsed and re-serialized: the rest of its bytes stay as the server wrote
 * them.
 */
export interface UsageFilter {
  /** The bytes to pass on for this read, in order (possibly none). */
  push(chunk: Buffer): Buffer[];
  /** What is held back at the end of the stream (an unterminated last event). */
  end(): Buffer[];
}

/** What the client did not ask for, and the tap's request brought. */
export interface UsageStrip {
  /** Drop the usage-only event (`"choices":[]`) that include_usage adds before [DONE]. */
  usageOnly: boolean;
  /** Remove the `usage` member (an object, or null) from every other event. */
  chunkUsage: boolean;
}

/** The usage a client's `stream_options` asks a vLLM server for (vLLM's `should_include_usage()`). */
export interface UsageAsked {
  include: boolean;
  continuous: boolean;
}

/**
 * As vLLM reads `stream_options` (its StreamOptions model, then `should_include_usage()`): none or
 * null → no usage; an object → include_usage is true unless it says false or null (vLLM's default,
 * unlike OpenAI's API); per-chunk usage only with include_usage. Anything else is not an object the
 * server accepts: undefined (the server answers it, and the tap leaves the body alone).
 */
export function usageAsked(streamOptions: unknown): UsageAsked | undefined {
  if (streamOptions === undefined || streamOptions === null) return { include: false, continuous: false };
  if (typeof streamOptions !== "object" || Array.isArray(streamOptions)) return undefined;
  const so = streamOptions as { include_usage?: unknown; continuous_usage_stats?: unknown };
  const include = so.include_usage === undefined || so.include_usage === true;
  return { include, continuous: include && so.continuous_usage_stats === true };
}

/**
 * What to take out of a stream the client asked for with `asked`, when the tap asked for include_usage
 * and (`tapContinuous`) per-chunk usage; undefined when the client gets the server's bytes as they are.
 * A client without include_usage also loses a `usage` member on content chunks that is null: servers
 * that put usage on every chunk when include_usage is set (vLLM before exclude_unset, OpenAI) do so.
 */
export function usageStrip(asked: UsageAsked, tapContinuous: boolean): UsageStrip | undefined {
  if (!asked.include) return { usageOnly: true, chunkUsage: true };
  if (!asked.continuous && tapContinuous) return { usageOnly: false, chunkUsage: true };
  return undefined;
}

const USAGE_ONLY = Buffer.from('"choices":[]');
const USAGE_NAME = Buffer.from('"usage"');

export function createUsageFilter(strip: UsageStrip): UsageFilter {
  let pending: Buffer | undefined;
  const changes = (b: Buffer) => (strip.usageOnly && b.includes(USAGE_ONLY)) || (strip.chunkUsage && b.includes(USAGE_NAME));
  /** The events of buf[0, to) that pass, as few pieces as it allows. */
  const filter = (buf: Buffer, bounds: number[]): Buffer[] => {
    const out: Buffer[] = [];
    let runStart = 0;
    for (let i = 0, start = 0; i < bounds.length; start = bounds[i]!, i++) {
      const end = bounds[i]!;
      const event = buf.subarray(start, end);
      if (event.includes(USAGE_ONLY)) {
        if (!strip.usageOnly) continue; // the client asked for it: kept as it is
        if (start > runStart) out.push(buf.subarray(runStart, start));
        runStart = end;
      } else if (strip.chunkUsage && event.includes(USAGE_NAME)) {
        const cut = usageMember(event);
        if (!cut) continue;
        if (start + cut[0] > runStart) out.push(buf.subarray(runStart, start + cut[0]));
        runStart = start + cut[1];
      }
    }
    const last = bounds.at(-1) ?? 0;
    if (last > runStart) out.push(buf.subarray(runStart, last));
    // One write per read (a client that reads per write wakes once), at the cost of copying a read.
    return out.length > 1 ? [Buffer.concat(out)] : out;
  };
  return {
    push(chunk) {
      if (!pending && endsWithSeparator(chunk) && !changes(chunk)) return [chunk];
      const buf = pending ? Buffer.concat([pending, chunk]) : chunk;
      const bounds: number[] = [];
      for (let end = nextEventEnd(buf, 0); end >= 0; end = nextEventEnd(buf, end)) bounds.push(end);
      const start = bounds.at(-1) ?? 0;
      const out = bounds.length > 0 ? filter(buf, bounds) : [];
      pending = start < buf.length ? buf.subarray(start) : undefined;
      // An event that never ends is not held back for ever: past 4 MiB its bytes go through as they are.
      if (pending && pending.length > MAX_LINE_BYTES) {
        out.push(pending);
        pending = undefined;
      }
      return out;
    },
    end() {
      const rest = pending ? filter(pending, [pending.length]) : [];
      pending = undefined;
      return rest;
    },
  };
}

/** Index just past the next event separator (a blank line, LF or CRLF) at or after `from`, or -1. */
function nextEventEnd(buf: Buffer, from: number): number {
  for (let i = buf.indexOf(0x0a, from); i >= 0; i = buf.indexOf(0x0a, i + 1)) {
    if (buf[i + 1] === 0x0a) return i + 2;
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

function endsWithSeparator(buf: Buffer): boolean {
  const n = buf.length;
  return n >= 2 && buf[n - 1] === 0x0a && (buf[n - 2] === 0x0a || (n >= 3 && buf[n - 2] === 0x0d && buf[n - 3] === 0x0a));
}

const isSpace = (c: number | undefined) => c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;

/**
 * The byte range [from, to) that removes the top-level `usage` member from the JSON object of the
 * event's first `data:` line, with the comma that joined it to a neighbour; undefined when the line
 * holds no such member or is not a JSON object (then the event passes as it is). A scan, not a parse:
 * one pass over the bytes, honouring strings and escapes, so a `"usage"` inside a string or a nested
 * object is never touched.
 */
export function usageMember(event: Buffer): [number, number] | undefined {
  return lastUsageMember(event) ?? scanUsageMember(event);
}

const COMMA_USAGE = Buffer.from(',"usage":');

/**
 * The common case, found without scanning the chunk's text: usage as the last member, where vLLM's
 * chunk models put it (after choices). A raw `,"usage":` is a comma and a member's name wherever it
 * is in valid JSON (a quote inside a string is escaped); when its value is followed by the `}` that
 * ends the line, the member is the top-level object's.
 */
function lastUsageMember(event: Buffer): [number, number] | undefined {
  const at = event.lastIndexOf(COMMA_USAGE);
  if (at < 0) return undefined;
  const end = valueEnd(event, at + COMMA_USAGE.length);
  if (end < 0) return undefined;
  let i = end;
  while (isSpace(event[i]) && event[i] !== 0x0a) i++;
  if (event[i] !== 0x7d) return undefined; // "}"
  for (i++; i < event.length && event[i] !== 0x0a; i++) if (!isSpace(event[i])) return undefined;
  return [at, end];
}

/** Index just past the JSON value (null, a number or an object, as usage is) that starts at `i`; -1 otherwise. */
function valueEnd(buf: Buffer, i: number): number {
  while (isSpace(buf[i])) i++;
  if (buf[i] !== 0x7b) {
    // null or a number: up to the next delimiter
    const s = i;
    while (i < buf.length && buf[i] !== 0x2c && buf[i] !== 0x7d && buf[i] !== 0x5d && !isSpace(buf[i])) i++;
    return i > s ? i : -1;
  }
  let depth = 0;
  for (; i < buf.length; i++) {
    const c = buf[i];
    if (c === 0x22) {
      for (i++; i < buf.length && buf[i] !== 0x22; i++) if (buf[i] === 0x5c) i++;
    } else if (c === 0x7b || c === 0x5b) depth++;
    else if ((c === 0x7d || c === 0x5d) && --depth === 0) return i + 1;
    else if (c === 0x0a) return -1;
  }
  return -1;
}

/** Any other place of the member: one scan of the line. */
function scanUsageMember(event: Buffer): [number, number] | undefined {
  let i = event.indexOf("data:");
  if (i < 0) return undefined;
  const lineEnd = event.indexOf(0x0a, i);
  const to = lineEnd < 0 ? event.length : lineEnd;
  i += 5;
  while (i < to && isSpace(event[i])) i++;
  if (event[i] !== 0x7b) return undefined; // "{"
  let depth = 0;
  /** At depth 1, the next string is a member's name. */
  let nameNext = false;
  /** Where the member being read began, and the comma before it (-1: none), at depth 1. */
  let memberStart = -1;
  let commaBefore = -1;
  let lastComma = -1;
  let inUsage = false;
  for (; i < to; i++) {
    const c = event[i]!;
    if (c === 0x22) {
      // a string: its end is the next quote not escaped
      const s = i;
      for (i++; i < to && event[i] !== 0x22; i++) if (event[i] === 0x5c) i++;
      if (depth === 1 && nameNext) {
        nameNext = false;
        memberStart = s;
        commaBefore = lastComma;
        inUsage = i - s + 1 === USAGE_NAME.length && event.compare(USAGE_NAME, 0, USAGE_NAME.length, s, i + 1) === 0;
      }
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      if (++depth === 1) nameNext = true;
    } else if (c === 0x7d || c === 0x5d) {
      if (depth === 1 && inUsage) return cut(event, memberStart, i, commaBefore, false);
      depth--;
    } else if (c === 0x2c && depth === 1) {
      if (inUsage) return cut(event, memberStart, i, commaBefore, true);
      lastComma = i;
      nameNext = true;
    }
  }
  return undefined;
}

/**
 * The member at [start, valueEnd) goes with the comma before it when there is one (`,"usage":…`), else
 * with the comma after it (`"usage":…,` as the first member); the only member leaves `{}`.
 */
function cut(event: Buffer, start: number, valueEnd: number, commaBefore: number, commaAfter: boolean): [number, number] {
  if (commaBefore >= 0) {
    let end = valueEnd;
    while (isSpace(event[end - 1])) end--;
    return [commaBefore, end];
  }
  if (!commaAfter) {
    let end = valueEnd;
    while (isSpace(event[end - 1])) end--;
    return [start, end];
  }
  let end = valueEnd + 1;
  while (isSpace(event[end])) end++;
  return [start, end];
}
