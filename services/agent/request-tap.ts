import { createServer, request as httpRequest, Agent, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { request as httpsRequest, Agent as HttpsAgent } from "node:https";
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { MAX_REQUEST_ID_CHARS, type Clock, type InstanceInfo, type RequestEnd, type RequestEvent, type RequestStart } from "../../shared/mod.ts";
import { createSseCounter, isTokenCount, serverErrorMessage } from "./sse-counter.ts";
import { createUsageFilter, usageAsked, usageStrip, type UsageStrip } from "./usage-filter.ts";
import type { WorkTracker } from "./work-tracker.ts";
import { errorMessage } from "../../shared/errors.ts";

/**
 * The request tap: an OpenAI-compatible reverse proxy in front of one inference server instance.
 * It passes bytes through as they come (no buffering of responses) and watches them on the side:
 * arrival, first token, tokens per window (→ WORK), end with usage, client abort, upstream error.
 * Publishing is the caller's `emit`, which must only enqueue: the proxy never waits on NATS.
 */
export interface RequestTapOptions {
  node: string;
  instance: InstanceInfo;
  host: string;
  port: number;
  clock: Clock;
  tracker: WorkTracker;
  emit(event: RequestEvent): void;
  /** Bodies larger than this are refused with 413 (default 16 MiB). */
  maxBodyBytes?: number;
  /** Ask the server for usage in every chunk (vLLM's continuous_usage_stats); default true. */
  continuousUsage?: boolean;
  /** Text prompts: tokens ≈ chars / this ratio until the server's usage says (default 4). */
  charsPerToken?: number;
}

export interface RequestTap {
  readonly url: string;
  stats(): { requests: number; active: number; aborted: number; upstreamErrors: number; rejected: number };
  close(): Promise<void>;
}

const TRACKED = /\/v1\/(chat\/)?completions$/;
const MAX_MODEL_CHARS = 256;
/**
 * Client request ids remembered to catch a reuse (a retry that keeps its id, a gateway's fixed id):
 * far more than any node has in flight, a few MB at most.
 */
const MAX_RECENT_IDS = 20_000;

export async function startRequestTap(opts: RequestTapOptions): Promise<RequestTap> {
  const upstream = new URL(opts.instance.upstream);
  const basePath = upstream.pathname.replace(/\/$/, "");
  if (upstream.protocol !== "http:" && upstream.protocol !== "https:") throw new Error(`instance ${opts.instance.id}: upstream ${opts.instance.upstream} must be an http:// or https:// URL`);
  const tls = upstream.protocol === "https:";
  const agent = tls ? new HttpsAgent({ keepAlive: true, maxSockets: Infinity }) : new Agent({ keepAlive: true, maxSockets: Infinity });
  const upstreamRequest = tls ? httpsRequest : httpRequest;
  const maxBody = opts.maxBodyBytes ?? 16 * 1024 * 1024;
  const stats = { requests: 0, active: 0, aborted: 0, upstreamErrors: 0, rejected: 0 };
  const inst = opts.instance.id;
  // Events are built property by property, not with object spread. With a spread base and spread
  // optional parts, V8 promoted the request's objects to the old generation although each event was
  // garbage at once (even with emit a no-op): 10,000 streamed requests promoted 50.6 MB (--trace-gc-
  // nvp), with scavenges of 1-3 ms and a mark-compact about every second at 2,000 requests/s.
  // Built plainly: 5.0 MB; 2.8 MB with the SSE counter a class; 1.1 MB with headers relayed as raw
  // arrays (see `relayed`), nearly all of it the work tracker's entries, which live until their
  // window closes.
  const node = opts.node;
  const recentIds = new Set<string>();
  const tapContinuous = opts.continuousUsage !== false;
  const usageOptions = { include_usage: true, ...(tapContinuous ? { continuous_usage_stats: true } : {}) };

  /**
   * The tap's own answer, in the shape of the server's errors (vLLM's ErrorResponse: message, type,
   * param, code), so a client parses it as it parses theirs; with the request's id when it has one,
   * as every response of a tracked request does.
   */
  const jsonError = (res: ServerResponse, status: number, type: string, message: string, requestId?: string) => {
    if (res.headersSent) return res.destroy();
    const body = JSON.stringify({ error: { message, type, param: null, code: status } });
    const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": Buffer.byteLength(body) };
    if (requestId !== undefined) headers["x-request-id"] = requestId;
    res.writeHead(status, headers);
    res.end(body);
  };

  const readBody = (req: IncomingMessage): Promise<Buffer | "too_large"> =>
    new Promise((resolve, reject) => {
      const declared = Number(req.headers["content-length"] ?? 0);
      if (declared > maxBody) return resolve("too_large");
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size > maxBody) {
          req.removeAllListeners("data");
          resolve("too_large");
          req.resume();
          return;
        }
        chunks.push(c);
      });
      req.on("end", () => resolve(Buffer.concat(chunks)));
      req.on("error", reject);
    });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? "/";
    const tracked = req.method === "POST" && TRACKED.test(path.split("?")[0]!);
    const body = await readBody(req);
    if (body === "too_large") {
      stats.rejected++;
      return jsonError(res, 413, "request_too_large", `request body exceeds ${maxBody} bytes`);
    }
    if (!tracked) return forward(req, res, path, relayed(req.rawHeaders, REQUEST_DROPPED), body, undefined);

    // The client's id, unless no message could carry it: then the tap's own, which the client gets back.
    const clientId = req.headers["x-request-id"];
    // An id this tap saw lately (a client's retry, a fixed id, another client's id) would merge two
    // requests downstream (the analyzer keys and de-duplicates by it): such a request gets its own.
    const usable = typeof clientId === "string" && clientId.length > 0 && clientId.length <= MAX_REQUEST_ID_CHARS && !recentIds.has(clientId);
    const requestId = usable ? clientId : randomUUID();
    recentIds.add(requestId);
    if (recentIds.size > MAX_RECENT_IDS) recentIds.delete(recentIds.values().next().value!);
    const headers = relayed(req.rawHeaders, REQUEST_DROPPED_TRACKED);
    // The tap reads the response: it must come uncompressed (the client gets it as it would direct).
    headers.push("x-request-id", requestId, "accept-encoding", "identity");
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
      strip = usageStrip(asked, tapContinuous);
    }
    const endpoint = path.includes("/chat/") ? "chat" : "completions";
    const hint = promptHint(parsed, opts.charsPerToken ?? 4);
    const header = (h: string) => (typeof req.headers[h] === "string" ? (req.headers[h] as string) : undefined);
    stats.requests++;
    stats.active++;
    opts.tracker.started(inst, requestId);
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
    opts.emit(start);
    forward(req, res, path, headers, out, { requestId, stream, strip, hint, outputTokens: 0, finished: false, ended: false });
  };

  interface Track {
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

  /** `headers`: the client's, as raw name/value pairs, less hop-by-hop ones, host and length. */
  const forward = (req: IncomingMessage, res: ServerResponse, path: string, headers: string[], body: Buffer, track: Track | undefined) => {
    headers.push("host", upstream.host, "content-length", String(body.length));
    const up = upstreamRequest(
      {
        host: upstream.hostname,
        port: upstream.port || (tls ? 443 : 80),
        method: req.method,
        path: basePath + path,
        headers,
        agent,
      },
      (ures) => {
        // A stream's length is unknown (the usage chunk may be dropped): no content-length.
        const resHeaders = relayed(ures.rawHeaders, !track ? HOP_BY_HOP : track.stream ? RESPONSE_DROPPED_STREAM : RESPONSE_DROPPED_TRACKED);
        if (track) resHeaders.push("x-request-id", track.requestId);
        res.writeHead(ures.statusCode ?? 502, resHeaders);
        if (!track) {
          ures.on("data", () => holdUntilEnd(res));
          ures.pipe(res);
          // A server that dies mid-response: the client sees its connection end, as it would direct.
          ures.on("error", () => res.destroy());
          return;
        }
        watch(track, ures, res);
      },
    );
    up.on("error", (err) => {
      if (track && !track.ended) {
        stats.upstreamErrors++;
        finish(track, "error", 502, 0, 0, `upstream unreachable: ${err.message}`);
      }
      jsonError(res, 502, "upstream_unavailable", `inference server at ${opts.instance.upstream} is unreachable: ${err.message}`, track?.requestId);
    });
    res.on("close", () => {
      if (res.writableFinished) return;
      up.destroy();
      if (track && !track.finished) {
        stats.aborted++;
        finish(track, "aborted", 499, track.promptTokens ?? track.hint ?? 0, track.outputTokens, "client disconnected");
      }
    });
    up.end(body);
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
      let promptTokens = counter.promptTokens ?? t.hint ?? 0;
      let outputTokens = counter.outputTokens;
      let error: string | undefined;
      if (!t.stream || status >= 400) {
        const text = Buffer.concat(nonStream).toString("utf8");
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
        if (first && promptTokens > prefillTokens) opts.tracker.prefill(inst, t.requestId, promptTokens - prefillTokens);
        // vLLM reports a failure after the 200 as an SSE event: {"error": {...}}.
        if (counter.error !== undefined) error = counter.error;
      }
      finish(t, status >= 400 || error !== undefined ? "error" : "ok", status, promptTokens, outputTokens, error);
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

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => jsonError(res, 500, "tap_error", errorMessage(err)));
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${opts.host}:${addr.port}`,
    stats: () => ({ ...stats }),
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      agent.destroy();
    },
  };
}

/**
 * Corks the client's socket for the rest of this tick and the next, so that a response's last bytes
 * and its end leave in one segment. Node emits a response's 'end' one tick after the 'data' that
 * completed it (even when both came in one read), and its own cork of a chunked write lasts one
 * tick: without this the chunked terminator went alone (`strace`: a writev, then write "0\r\n\r\n"),
 * and the client woke twice for every request. `end()` uncorks the socket fully; a streamed chunk
 * with more to come leaves two ticks later, in the same turn of the event loop (no timer).
 * Were Node to order these ticks otherwise, the bytes would still go, only in two writes.
 */
function holdUntilEnd(res: ServerResponse): void {
  const socket = res.socket;
  if (!socket || socket.writableCorked || socket.destroyed) return;
  socket.cork();
  process.nextTick(() => process.nextTick(() => socket.uncork()));
}

/**
 * The request body with `stream_options` added as its first key, without re-serializing the rest
 * (a long prompt is copied once, not parsed back into text). Only for a JSON object that has no
 * `stream_options` and at least one key (`stream: true`), so the result stays valid JSON.
 */
export function withUsageOptions(body: Buffer, options: Record<string, unknown>): Buffer {
  const open = body.indexOf(0x7b); // "{"
  return Buffer.concat([body.subarray(0, open + 1), Buffer.from(`"stream_options":${JSON.stringify(options)},`), body.subarray(open + 1)]);
}

/**
 * The body with a `stream_options` key added last, which JSON parsers (Python's json, pydantic's
 * jiter, JSON.parse) take over the client's earlier one. The rest of the body is not re-serialized:
 * JSON.stringify(JSON.parse(x)) changes numbers past 2^53 (a 64-bit seed) and drops -0, 1e400….
 */
export function withMergedUsageOptions(body: Buffer, streamOptions: Record<string, unknown>): Buffer {
  const close = body.lastIndexOf(0x7d); // "}"
  return Buffer.concat([body.subarray(0, close), Buffer.from(`,"stream_options":${JSON.stringify(streamOptions)}`), body.subarray(close)]);
}

/** What the tap can know of the prompt's length before the server answers. */
function promptHint(body: Record<string, unknown> | undefined, charsPerToken: number): number | undefined {
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

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, so a proxy does not pass them
 * on; Node sets its own for each side.
 */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"]);
const REQUEST_DROPPED = new Set([...HOP_BY_HOP, "host", "content-length"]);
const REQUEST_DROPPED_TRACKED = new Set([...REQUEST_DROPPED, "x-request-id", "accept-encoding"]);
const RESPONSE_DROPPED_TRACKED = new Set([...HOP_BY_HOP, "x-request-id"]);
const RESPONSE_DROPPED_STREAM = new Set([...RESPONSE_DROPPED_TRACKED, "content-length"]);

/**
 * Raw header pairs (name, value, name, value, …, as `rawHeaders` gives them: names as sent, repeats
 * kept) less those in `drop` (lower case). Arrays rather than header objects copied with spread and
 * `delete`: those turned every request's header objects into dictionaries, which V8 promoted out
 * of the young generation (the largest share of what the tap promoted, by a heap sampling profile).
 */
export function relayed(raw: readonly string[], drop: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!drop.has(raw[i]!.toLowerCase())) out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}
