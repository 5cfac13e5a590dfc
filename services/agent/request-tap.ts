import { createServer, request as httpRequest, Agent, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { request as httpsRequest, Agent as HttpsAgent } from "node:https";
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { createLifecycle, MAX_REQUEST_ID_CHARS, type Clock, type InstanceInfo, type RequestEvent } from "../../shared/mod.ts";
import { errorMessage } from "../../shared/errors.ts";
import { createRequestWatcher, type TapStats, type Track } from "./request-watcher.ts";
import { holdUntilEnd, HOP_BY_HOP, jsonError, readBody, relayed, REQUEST_DROPPED, REQUEST_DROPPED_TRACKED, RESPONSE_DROPPED_STREAM, RESPONSE_DROPPED_TRACKED } from "./tap-http.ts";
import type { WorkTracker } from "./work-tracker.ts";

/**
 * The request tap: an OpenAI-compatible reverse proxy in front of one inference server instance.
 * It passes bytes through as they come (no buffering of responses) and watches them on the side:
 * arrival, first token, tokens per window (→ WORK), end with usage, client abort, upstream error.
 * Publishing is the caller's `emit`, which must only enqueue: the proxy never waits on NATS.
 * This file is the proxy: the listening server, request ids, forwarding upstream, aborts. What it
 * watches is request-watcher.ts; body, header and socket mechanics are tap-http.ts.
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
  /** On close, how long requests in flight may finish before their connections are cut (default 2 s). */
  closeGraceMs?: number;
}

export interface RequestTap {
  readonly url: string;
  stats(): { requests: number; active: number; aborted: number; upstreamErrors: number; rejected: number };
  close(): Promise<void>;
}

const TRACKED = /\/v1\/(chat\/)?completions$/;
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
  const stats: TapStats = { requests: 0, active: 0, aborted: 0, upstreamErrors: 0, rejected: 0 };
  const requestIdOf = createRequestIds();
  const watcher = createRequestWatcher({
    node: opts.node,
    instance: opts.instance.id,
    clock: opts.clock,
    tracker: opts.tracker,
    emit: opts.emit,
    maxBodyBytes: maxBody,
    continuousUsage: opts.continuousUsage !== false,
    charsPerToken: opts.charsPerToken ?? 4,
    stats,
  });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? "/";
    const tracked = req.method === "POST" && TRACKED.test(path.split("?")[0]!);
    const body = await readBody(req, maxBody);
    if (body === "too_large") {
      stats.rejected++;
      return jsonError(res, 413, "request_too_large", `request body exceeds ${maxBody} bytes`);
    }
    if (!tracked) return forward(req, res, path, relayed(req.rawHeaders, REQUEST_DROPPED), body, undefined);
    const requestId = requestIdOf(req.headers["x-request-id"]);
    const headers = relayed(req.rawHeaders, REQUEST_DROPPED_TRACKED);
    // The tap reads the response: it must come uncompressed (the client gets it as it would direct).
    headers.push("x-request-id", requestId, "accept-encoding", "identity");
    const begun = watcher.begin(req, path, requestId, body);
    forward(req, res, path, headers, begun.body, begun.track);
  };

  /** `headers`: the client's, as raw name/value pairs, less hop-by-hop ones, host and length. */
  const forward = (req: IncomingMessage, res: ServerResponse, path: string, headers: string[], body: Buffer, track: Track | undefined) => {
    headers.push("host", upstream.host, "content-length", String(body.length));
    const up = upstreamRequest({ host: upstream.hostname, port: upstream.port || (tls ? 443 : 80), method: req.method, path: basePath + path, headers, agent }, (ures) => {
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
      watcher.watch(track, ures, res);
    });
    up.on("error", (err) => {
      if (track && !track.ended) {
        stats.upstreamErrors++;
        watcher.finish(track, "error", 502, 0, 0, `upstream unreachable: ${err.message}`);
      }
      jsonError(res, 502, "upstream_unavailable", `inference server at ${opts.instance.upstream} is unreachable: ${err.message}`, track?.requestId);
    });
    res.on("close", () => {
      if (res.writableFinished) return;
      up.destroy();
      if (track && !track.finished) {
        stats.aborted++;
        watcher.finish(track, "aborted", 499, track.promptTokens ?? track.hint ?? 0, track.outputTokens, "client disconnected");
      }
    });
    up.end(body);
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
  // Closing: no new connections, idle keep-alive ones closed now, requests in flight may finish
  // (a stream ends as the server ends it) within the grace; then their connections are cut.
  const life = createLifecycle({
    graceMs: opts.closeGraceMs ?? 2000,
    graceful: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // A keep-alive connection whose response just ended is idle from then on: close those as
      // they come (the server waits for every connection).
      server.closeIdleConnections();
      const idle = setInterval(() => server.closeIdleConnections(), 25);
      await closed.finally(() => clearInterval(idle));
      agent.destroy();
    },
    force: () => {
      server.closeAllConnections();
      agent.destroy();
    },
  });
  return {
    url: `http://${opts.host}:${addr.port}`,
    stats: () => ({ ...stats }),
    close: async () => {
      await life.stop();
    },
  };
}

/**
 * The id a tracked request goes by: the client's, unless no message could carry it; then the tap's
 * own, which the client gets back. An id this tap saw lately (a client's retry, a fixed id, another
 * client's id) would merge two requests downstream (the analyzer keys and de-duplicates by it): such
 * a request gets its own too.
 */
function createRequestIds(): (clientId: string | string[] | undefined) => string {
  const recentIds = new Set<string>();
  return (clientId) => {
    const usable = typeof clientId === "string" && clientId.length > 0 && clientId.length <= MAX_REQUEST_ID_CHARS && !recentIds.has(clientId);
    const requestId = usable ? clientId : randomUUID();
    recentIds.add(requestId);
    if (recentIds.size > MAX_RECENT_IDS) recentIds.delete(recentIds.values().next().value!);
    return requestId;
  };
}
