import type { IncomingMessage, ServerResponse } from "node:http";
import type { Clock, RequestEnd, RequestEvent, RequestStart } from "../../shared/mod.ts";
import { createSseCounter, isTokenCount, serverErrorMessage, type SseCounter } from "./sse-counter.ts";
import { createUsageFilter, usageAsked, usageStrip, type UsageStrip } from "./usage-filter.ts";
import { holdUntilEnd, withMergedUsageOptions, withUsageOptions } from "./tap-http.ts";
import type { WorkTracker } from "./work-tracker.ts";

/**
 * The request watcher: what the tap learns of a tracked request on the side of relaying it. It
 * reads the request (model, prompt length hint, max tokens, whether to ask for usage), emits start,
 * first token and end, counts streamed tokens into the work tracker as they pass, and reads a whole
 * response's usage at its end. The bytes go to the client first; the bookkeeping after.
 */
export interface RequestWatcherOptions {
  node: string;
  instance: string;
  clock: Clock;
  tracker: WorkTracker;
  emit(event: RequestEvent): void;
  /** A whole (non-streamed) response is kept up to this many bytes to read its usage. */
  maxBodyBytes: number;
  /** Ask the server for usage in every chunk (vLLM's continuous_usage_stats). */
  continuousUsage: boolean;
  /** Text prompts: tokens ≈ chars / this ratio until the server's usage says. */
  charsPerToken: number;
  /** The tap's counters, shared with the proxy. */
  stats: TapStats;
}

export interface TapStats {
  requests: number;
  active: number;
  aborted: number;
  upstreamErrors: number;
  rejected: number;
}

/** One tracked request, from its start event to its end event. */
export interface Track {
  requestId: string;
  stream: boolean;
  /** What the tap's stream_options added, to take out before the client gets it; none: relay as is. */
  strip: UsageStrip | undefined;
  hint: number | undefined;
  /** Tokens seen so far, for the record of a request that ends early. */
  outputTokens: number;
  promptTokens?: number;
  /** The upstream response is complete. */
  finished: boolean;
  /** The end event was emitted (exactly once per request). */
  ended: boolean;
}

export interface RequestWatcher {
  /** Emits the start event; returns the track and the body to send (with the tap's stream_options). */
  begin(req: IncomingMessage, path: string, requestId: string, body: Buffer): { track: Track; body: Buffer };
  /** Relays the upstream response to the client, watching it. */
  watch(t: Track, ures: IncomingMessage, res: ServerResponse): void;
  /** Emits the end event, once. */
  finish(t: Track, status: "ok" | "aborted" | "error", httpStatus: number, promptTokens: number, outputTokens: number, error?: string): void;
}

const MAX_MODEL_CHARS = 256;

export function createRequestWatcher(opts: RequestWatcherOptions): RequestWatcher {
  // Events are built property by property, not with object spread. With a spread base and spread
  // optional parts, V8 promoted the request's objects to the old generation although each event was
  // garbage at once (even with emit a no-op): 10,000 streamed requests promoted 50.6 MB (--trace-gc-
  // nvp), with scavenges of 1-3 ms and a mark-compact about every second at 2,000 requests/s.
  // Built plainly: 5.0 MB; 2.8 MB with the SSE counter a class; 1.1 MB with headers relayed as raw
  // arrays (see `relayed`), nearly all of it the work tracker's entries, which live until their
  // window closes.
  const { node, instance: inst, stats, maxBodyBytes: maxBody } = opts;
  const usageOptions = { include_usage: true, ...(opts.continuousUsage ? { continuous_usage_stats: true } : {}) };

  const begin = (req: IncomingMessage, path: string, requestId: string, body: Buffer) => {
    let parsed: Record<string, unknown> | undefined;
    try {
      const j = JSON.parse(body.toString("utf8"));
      if (j && typeof j === "object" && !Array.isArray(j)) parsed = j;
    } catch {
      parsed = undefined; // the server will answer 400; we pass it through untouched
    }
    let out = body;
    let strip: UsageStrip | undefined;
    const stream = parsed?.stream === true;
    // stream_options that are not an object are the server's to refuse: the body goes as it came.
    const asked = parsed && stream ? usageAsked(parsed.stream_options) : undefined;
    if (asked) {
      const so = parsed!.stream_options;
      out = so === undefined ? withUsageOptions(body, usageOptions) : withMergedUsageOptions(body, { ...(so as object | null), ...usageOptions });
      // What the tap's options add to the stream, the client does not get.
      strip = usageStrip(asked, opts.continuousUsage);
    }
    const hint = promptHint(parsed, opts.charsPerToken);
    stats.requests++;
    stats.active++;
    const start = startEvent(req, path, requestId, parsed, stream, hint);
    // Arrival, prompt length and max_tokens: what the tracker's prefill estimate needs (prefill-spread.ts).
    opts.tracker.started(inst, requestId, start.tMs, hint, start.maxTokens);
    opts.emit(start);
    return { track: { requestId, stream, strip, hint, outputTokens: 0, finished: false, ended: false }, body: out };
  };

  const startEvent = (req: IncomingMessage, path: string, requestId: string, parsed: Record<string, unknown> | undefined, stream: boolean, hint: number | undefined): RequestStart => {
    const header = (h: string) => (typeof req.headers[h] === "string" ? (req.headers[h] as string) : undefined);
    const endpoint = path.includes("/chat/") ? "chat" : "completions";
    const runId = header("x-joulestream-run");
    const workloadClass = header("x-joulestream-class");
    const start: RequestStart = { v: 1, kind: "request", node, instance: inst, msgId: `${node}:req:${requestId}:start`, requestId, tMs: opts.clock.nowMs(), event: "start", endpoint, stream };
    // The client's model name goes into every event batch and InfluxDB tag: a hostile or broken
    // client must not make one event too large to publish (the server's max payload is 1 MiB).
    if (typeof parsed?.model === "string") start.model = parsed.model.slice(0, MAX_MODEL_CHARS);
    if (hint !== undefined) start.promptTokensHint = hint;
    const maxTokens = parsed?.max_tokens ?? parsed?.max_completion_tokens;
    if (isTokenCount(maxTokens)) start.maxTokens = maxTokens;
    if (runId) start.runId = runId;
    if (workloadClass) start.workloadClass = workloadClass;
    return start;
  };

  const watch = (t: Track, ures: IncomingMessage, res: ServerResponse) => {
    const status = ures.statusCode ?? 0;
    // What the server sends decides, not what the client asked: a server may stream for `"stream": "true"`.
    if (!t.stream && /^text\/event-stream/i.test(String(ures.headers["content-type"] ?? ""))) t.stream = true;
    const counter = createSseCounter();
    const filter = t.stream && status < 400 && t.strip ? createUsageFilter(t.strip) : undefined;
    let first = false;
    let prefillTokens = 0;
    /** A whole (non-streamed) response, kept to read its usage: up to the body limit, not without end. */
    const nonStream: Buffer[] = [];
    let nonStreamBytes = 0;
    const onTokens = (n: number, promptTokens: number | undefined) => {
      if (n <= 0) return;
      if (!first) {
        first = true;
        prefillTokens = promptTokens ?? t.hint ?? 0;
        opts.emit({ v: 1, kind: "request", node, instance: inst, msgId: `${node}:req:${t.requestId}:first`, requestId: t.requestId, tMs: opts.clock.nowMs(), event: "first_token" });
        // The first output token is produced by the prefill step; the rest are decode steps.
        opts.tracker.prefill(inst, t.requestId, prefillTokens);
        opts.tracker.decode(inst, t.requestId, n - 1);
      } else {
        opts.tracker.decode(inst, t.requestId, n);
      }
    };
    // A client that reads slowly (or not at all) slows the server's socket down, as it would direct:
    // the tap does not hold what the client has not taken.
    const relay = (b: Buffer) => {
      holdUntilEnd(res);
      if (!res.write(b) && !ures.isPaused()) {
        ures.pause();
        res.once("drain", () => ures.resume());
      }
    };
    ures.on("data", (chunk: Buffer) => {
      if (!t.stream || status >= 400) {
        nonStreamBytes += chunk.length;
        if (nonStreamBytes <= maxBody) nonStream.push(chunk);
        relay(chunk);
        return;
      }
      // Bytes first, bookkeeping after: the client never waits on the tap's accounting.
      if (!filter) relay(chunk);
      else for (const part of filter.push(chunk)) relay(part);
      const p = counter.push(chunk);
      onTokens(p.newTokens, p.promptTokens ?? counter.promptTokens);
      t.outputTokens = counter.outputTokens;
      if (counter.promptTokens !== undefined) t.promptTokens = counter.promptTokens;
    });
    ures.on("end", () => {
      for (const part of filter?.end() ?? []) res.write(part);
      res.end();
      t.finished = true;
      settle(t, status, counter, nonStream, first ? prefillTokens : undefined, onTokens);
    });
    ures.on("error", (err) => {
      // The server's connection ended mid-response (crashed, killed, reset). The client's response
      // cannot be completed either: end its connection as the server did, instead of leaving it open
      // forever, and record what the request got so far.
      if (!t.ended) stats.upstreamErrors++;
      finish(t, "error", status, counter.promptTokens ?? t.hint ?? 0, counter.outputTokens, `upstream ended the response before it was complete (${err.message})`);
      res.destroy();
    });
    res.on("close", () => {
      if (!t.finished && !res.writableFinished) ures.destroy();
    });
  };

  /**
   * The response is complete: its usage (a whole response's body, or what the stream counted), then
   * the end event. `prefillTokens`: what the first token's prefill counted; undefined before one.
   */
  const settle = (t: Track, status: number, counter: SseCounter, whole: Buffer[], prefillTokens: number | undefined, onTokens: (n: number, promptTokens: number | undefined) => void) => {
    let promptTokens = counter.promptTokens ?? t.hint ?? 0;
    let outputTokens = counter.outputTokens;
    let error: string | undefined;
    if (!t.stream || status >= 400) {
      const text = Buffer.concat(whole).toString("utf8");
      try {
        const j = JSON.parse(text);
        if (j?.usage) {
          if (isTokenCount(j.usage.prompt_tokens)) promptTokens = j.usage.prompt_tokens;
          outputTokens = isTokenCount(j.usage.completion_tokens) ? j.usage.completion_tokens : 0;
        }
        if (status >= 400) error = serverErrorMessage(j) ?? text.slice(0, 200);
      } catch {
        if (status >= 400) error = text.slice(0, 200);
      }
      // Without a stream the tap sees no token times: the work lands in the window of completion.
      if (status < 400) onTokens(outputTokens, promptTokens);
    } else {
      if (prefillTokens !== undefined && promptTokens > prefillTokens) opts.tracker.prefill(inst, t.requestId, promptTokens - prefillTokens);
      // vLLM reports a failure after the 200 as an SSE event: {"error": {...}}.
      if (counter.error !== undefined) error = counter.error;
    }
    finish(t, status >= 400 || error !== undefined ? "error" : "ok", status, promptTokens, outputTokens, error);
  };

  const finish = (t: Track, status: "ok" | "aborted" | "error", httpStatus: number, promptTokens: number, outputTokens: number, error?: string) => {
    if (t.ended) return;
    t.ended = true;
    t.finished = true;
    stats.active--;
    opts.tracker.ended(inst, t.requestId);
    const end: RequestEnd = { v: 1, kind: "request", node, instance: inst, msgId: `${node}:req:${t.requestId}:end`, requestId: t.requestId, tMs: opts.clock.nowMs(), event: "end", status, httpStatus, promptTokens, outputTokens };
    if (error) end.error = error;
    opts.emit(end);
  };

  return { begin, watch, finish };
}

/** What the tap can know of the prompt's length before the server answers. */
export function promptHint(body: Record<string, unknown> | undefined, charsPerToken: number): number | undefined {
  if (!body) return undefined;
  const p = body.prompt;
  if (Array.isArray(p) && p.every((x) => typeof x === "number")) return p.length; // token ids: exact
  if (typeof p === "string") return Math.ceil(p.length / charsPerToken);
  if (Array.isArray(body.messages)) {
    let chars = 0;
    for (const m of body.messages as { content?: unknown }[]) {
      if (typeof m?.content === "string") chars += m.content.length;
      // Content as parts (OpenAI SDKs, multimodal): the text parts (images are the server's to count).
      else if (Array.isArray(m?.content)) for (const p of m.content as { text?: unknown }[]) if (typeof p?.text === "string") chars += p.text.length;
    }
    return Math.ceil(chars / charsPerToken);
  }
  return undefined;
}
