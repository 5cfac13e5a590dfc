import http from "node:http";
import https from "node:https";
import type { Clock } from "../../shared/units.ts";
import { errorMessage } from "../../shared/errors.ts";

/**
 * One streamed OpenAI-style request over node:http with keep-alive agents, timed on the injected
 * clock. A token event is an SSE `data:` chunk with non-empty text (completions) or delta content
 * (chat); its time is when its bytes reached us. Token counts come from the final `usage` chunk.
 */
export interface StreamOutcome {
  /** Epoch ms at which the request was handed to the socket. */
  sentMs: number;
  status: "ok" | "error" | "timeout" | "aborted";
  httpStatus?: number;
  error?: string;
  ttftMs?: number;
  e2eMs?: number;
  /** Gaps between consecutive token events, ms. */
  gaps: Float64Array;
  /** Token events seen (chunks with content). */
  chunks: number;
  usagePromptTokens?: number;
  usageOutputTokens?: number;
}

export interface StreamClient {
  send(url: URL, body: string, headers: Record<string, string>, opts: { timeoutMs: number; signal?: AbortSignal }): Promise<StreamOutcome>;
  /**
   * Opens a keep-alive connection to each URL's server and runs the request code once (a GET, its
   * answer read and dropped), so that a run's first request neither connects nor compiles on its
   * way out. Never rejects: a server that fails here is the run's to report; one that does not
   * answer is not waited for past `timeoutMs`.
   */
  warm(urls: URL[], timeoutMs: number): Promise<void>;
  close(): void;
}

const MAX_ERROR_BODY = 2000;

export function createStreamClient(clock: Clock, opts: { maxSockets?: number } = {}): StreamClient {
  const agentOpts = { keepAlive: true, maxSockets: opts.maxSockets ?? Infinity, keepAliveMsecs: 10_000, scheduling: "lifo" as const };
  const httpAgent = new http.Agent(agentOpts);
  const httpsAgent = new https.Agent(agentOpts);

  const send: StreamClient["send"] = (url, body, headers, o) =>
    new Promise<StreamOutcome>((resolve) => {
      const lib = url.protocol === "https:" ? https : http;
      let gaps = new Float64Array(64);
      let nGaps = 0;
      let chunks = 0;
      let firstMs: number | undefined;
      let lastMs = 0;
      let usagePrompt: number | undefined;
      let usageOutput: number | undefined;
      let httpStatus: number | undefined;
      let settled = false;
      let pending = "";
      let sentMs = clock.nowMs();

      const finish = (status: StreamOutcome["status"], error?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        o.signal?.removeEventListener("abort", onAbort);
        const endMs = clock.nowMs();
        resolve({
          sentMs,
          status,
          ...(httpStatus !== undefined ? { httpStatus } : {}),
          ...(error !== undefined ? { error } : {}),
          ...(firstMs !== undefined ? { ttftMs: firstMs - sentMs } : {}),
          ...(status === "ok" ? { e2eMs: endMs - sentMs } : {}),
          gaps: gaps.subarray(0, nGaps),
          chunks,
          ...(usagePrompt !== undefined ? { usagePromptTokens: usagePrompt } : {}),
          ...(usageOutput !== undefined ? { usageOutputTokens: usageOutput } : {}),
        });
      };

      const onEvent = (data: string, atMs: number) => {
        if (data === "[DONE]") return;
        let msg: { choices?: Array<{ text?: string; delta?: { content?: string | null; reasoning_content?: string | null } }>; usage?: { prompt_tokens?: number; completion_tokens?: number } | null; error?: unknown };
        try {
          msg = JSON.parse(data);
        } catch {
          return; // not JSON: servers send comments and keep-alives; nothing to time
        }
        if (msg.error) {
          streamError = typeof msg.error === "object" && msg.error && "message" in msg.error ? String((msg.error as { message: unknown }).message) : JSON.stringify(msg.error);
        }
        const c = msg.choices?.[0];
        if (c && (c.text || c.delta?.content || c.delta?.reasoning_content)) {
          chunks++;
          if (firstMs === undefined) firstMs = atMs;
          else {
            if (nGaps === gaps.length) {
              const g = new Float64Array(gaps.length * 2);
              g.set(gaps);
              gaps = g;
            }
            gaps[nGaps++] = atMs - lastMs;
          }
          lastMs = atMs;
        }
        if (msg.usage) {
          if (typeof msg.usage.prompt_tokens === "number") usagePrompt = msg.usage.prompt_tokens;
          if (typeof msg.usage.completion_tokens === "number") usageOutput = msg.usage.completion_tokens;
        }
      };
      let streamError: string | undefined;

      const req = lib.request(url, {
        method: "POST",
        agent: url.protocol === "https:" ? httpsAgent : httpAgent,
        headers: { "content-type": "application/json", accept: "text/event-stream", "content-length": Buffer.byteLength(body), ...headers },
      });
      const onAbort = () => {
        req.destroy();
        finish("aborted", "aborted by the caller");
      };
      const timer = setTimeout(() => {
        req.destroy();
        finish("timeout", `no complete response within ${o.timeoutMs} ms`);
      }, o.timeoutMs);
      if (o.signal?.aborted) return onAbort();
      o.signal?.addEventListener("abort", onAbort, { once: true });

      req.on("error", (err) => finish("error", errorMessage(err) || String(err)));
      req.on("response", (res) => {
        httpStatus = res.statusCode;
        res.setEncoding("utf8");
        if (res.statusCode !== 200) {
          let text = "";
          res.on("data", (d: string) => {
            if (text.length < MAX_ERROR_BODY) text += d;
          });
          res.on("end", () => finish("error", `HTTP ${res.statusCode}: ${text.slice(0, MAX_ERROR_BODY).trim()}`));
          res.on("error", (err) => finish("error", err.message));
          return;
        }
        res.on("data", (d: string) => {
          const atMs = clock.nowMs();
          pending += d;
          let start = 0;
          let nl: number;
          while ((nl = pending.indexOf("\n", start)) >= 0) {
            const end = nl > start && pending.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
            if (pending.startsWith("data:", start)) onEvent(pending.slice(start + (pending[start + 5] === " " ? 6 : 5), end), atMs);
            start = nl + 1;
          }
          pending = start === 0 ? pending : pending.slice(start);
        });
        res.on("end", () => {
          if (pending.startsWith("data:")) onEvent(pending.slice(pending[5] === " " ? 6 : 5), clock.nowMs());
          if (streamError !== undefined) finish("error", streamError);
          else finish("ok");
        });
        res.on("error", (err) => finish("error", err.message));
        res.on("aborted", () => finish("error", "response aborted by the server"));
      });
      sentMs = clock.nowMs();
      req.end(body);
    });

  const warmOne = (url: URL, timeoutMs: number) =>
    new Promise<void>((resolve) => {
      const lib = url.protocol === "https:" ? https : http;
      const req = lib.request(url, { method: "GET", agent: url.protocol === "https:" ? httpsAgent : httpAgent, headers: { accept: "application/json" } });
      const timer = setTimeout(() => req.destroy(), timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      req.on("error", done);
      req.on("response", (res) => {
        res.resume(); // read to the end, so the socket goes back to the agent's pool
        res.on("end", done);
        res.on("error", done);
        res.on("aborted", done);
      });
      req.end();
    });

  return {
    send,
    warm: async (urls, timeoutMs) => {
      await Promise.all(urls.map((u) => warmOne(u, timeoutMs)));
    },
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
