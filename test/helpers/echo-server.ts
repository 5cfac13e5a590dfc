import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A tiny, fast OpenAI-compatible streaming server for tests and benchmarks: it answers
 * /v1/completions and /v1/chat/completions by streaming `max_tokens` tokens at once (grouped
 * `tokensPerChunk` to a chunk), then usage (prompt_tokens = length of a token-id prompt, or
 * characters / 4 for text), then [DONE]; and records what it received.
 */
export interface ReceivedRequest {
  path: string;
  requestId: string | undefined;
  runId: string | undefined;
  workloadClass: string | undefined;
  /** Epoch ms when the request's headers arrived. */
  atMs: number;
  promptTokens: number;
  maxTokens: number;
  minTokens: number | undefined;
  ignoreEos: boolean | undefined;
  stream: boolean;
  includeUsage: boolean;
  /** Token-id prompts, when `keepPrompts` is on. */
  prompt?: number[];
  /** Text prompts (chat or completions), when `keepPrompts` is on. */
  text?: string;
}

export interface EchoServerOptions {
  port?: number;
  /** Tokens per SSE chunk (1 = one chunk per token, as real servers do). */
  tokensPerChunk?: number;
  /** Gap between chunks, ms (0 = all at once); a request's `x-echo-itl-ms` header overrides it. */
  itlMs?: number;
  /** Delay before the first chunk, ms. */
  ttftMs?: number;
  keepPrompts?: boolean;
  /** Do not record requests (benchmarks). */
  record?: boolean;
  /** Answer every request with this HTTP status and an OpenAI error body. */
  failStatus?: number;
}

export interface EchoServer {
  url: string;
  received: ReceivedRequest[];
  /** Requests answered so far. */
  readonly served: number;
  /** Most requests open at once so far. */
  readonly maxConcurrent: number;
  stop(): Promise<void>;
}

export async function startEchoServer(o: EchoServerOptions = {}): Promise<EchoServer> {
  const received: ReceivedRequest[] = [];
  const perChunk = Math.max(1, o.tokensPerChunk ?? 1);
  let served = 0;
  let active = 0;
  let maxConcurrent = 0;
  const server = http.createServer((req, res) => {
    const atMs = performance.timeOrigin + performance.now();
    active++;
    maxConcurrent = Math.max(maxConcurrent, active);
    res.on("close", () => active--);
    const chunks: Buffer[] = [];
    req.on("data", (d: Buffer) => chunks.push(d));
    req.on("end", () => {
      const path = (req.url ?? "").split("?")[0]!;
      const chat = path.endsWith("/chat/completions");
      if (!chat && !path.endsWith("/completions")) return reply(res, 404, { error: { message: `no route ${path}` } });
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        return reply(res, 400, { error: { message: "body is not JSON" } });
      }
      if (o.failStatus) return reply(res, o.failStatus, { error: { message: `echo server set to fail with ${o.failStatus}` } });
      const prompt = body.prompt;
      let promptTokens: number;
      let text: string | undefined;
      if (chat) {
        text = ((body.messages as { content?: string }[] | undefined) ?? []).map((m) => m.content ?? "").join("");
        promptTokens = Math.ceil(text.length / 4);
      } else if (Array.isArray(prompt)) promptTokens = prompt.length;
      else {
        text = String(prompt ?? "");
        promptTokens = Math.ceil(text.length / 4);
      }
      const maxTokens = typeof body.max_tokens === "number" ? body.max_tokens : 16;
      const h = (n: string) => (typeof req.headers[n] === "string" ? (req.headers[n] as string) : undefined);
      const streamOpts = body.stream_options as { include_usage?: boolean } | undefined;
      if (o.record !== false) {
        received.push({
          path,
          requestId: h("x-request-id"),
          runId: h("x-joulestream-run"),
          workloadClass: h("x-joulestream-class"),
          atMs,
          promptTokens,
          maxTokens,
          minTokens: typeof body.min_tokens === "number" ? body.min_tokens : undefined,
          ignoreEos: typeof body.ignore_eos === "boolean" ? body.ignore_eos : undefined,
          stream: body.stream === true,
          includeUsage: streamOpts?.include_usage === true,
          ...(o.keepPrompts && Array.isArray(prompt) ? { prompt: prompt as number[] } : {}),
          ...(o.keepPrompts && text !== undefined ? { text } : {}),
        });
      }
      const itlHeader = Number(h("x-echo-itl-ms") ?? Number.NaN);
      const continuous = streamOpts?.include_usage === true && (streamOpts as { continuous_usage_stats?: boolean }).continuous_usage_stats === true;
      stream(res, chat, maxTokens, promptTokens, itlHeader >= 0 ? itlHeader : (o.itlMs ?? 0), continuous);
    });
  });

  /** `continuous`: usage in every chunk too, as vLLM does with stream_options.continuous_usage_stats. */
  const stream = (res: http.ServerResponse, chat: boolean, maxTokens: number, promptTokens: number, itlMs: number, continuous = false) => {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const id = `cmpl-${served}`;
    let sent = 0;
    const chunk = (n: number) => {
      const t = "x".repeat(n);
      sent += n;
      const choice = chat ? { index: 0, delta: { content: t } } : { index: 0, text: t };
      const usage = continuous ? { usage: { prompt_tokens: promptTokens, completion_tokens: sent, total_tokens: promptTokens + sent } } : {};
      return `data: ${JSON.stringify({ id, object: chat ? "chat.completion.chunk" : "text_completion", choices: [choice], ...usage })}\n\n`;
    };
    const end = () => {
      res.end(`data: ${JSON.stringify({ id, choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: maxTokens, total_tokens: promptTokens + maxTokens } })}\n\ndata: [DONE]\n\n`);
      served++;
    };
    let left = maxTokens;
    if (!itlMs && !o.ttftMs) {
      let out = "";
      while (left > 0) {
        const n = Math.min(perChunk, left);
        out += chunk(n);
        left -= n;
      }
      res.write(out);
      return end();
    }
    const next = () => {
      if (res.destroyed) return;
      if (left <= 0) return end();
      const n = Math.min(perChunk, left);
      left -= n;
      res.write(chunk(n));
      setTimeout(next, itlMs);
    };
    setTimeout(next, o.ttftMs ?? 0);
  };

  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: o.port ?? 0, host: "127.0.0.1", backlog: 4096 }, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    get served() {
      return served;
    },
    get maxConcurrent() {
      return maxConcurrent;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
