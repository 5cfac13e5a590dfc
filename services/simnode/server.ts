import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { z } from "zod";
import { ConfigError, createLifecycle } from "../../shared/mod.ts";
import { createGpuTelemetry } from "./metrics.ts";
import { renderVllmMetrics } from "./vllm-metrics.ts";
import { createSimNode, type NodeConfig, type SimNode } from "./node.ts";
import { modelNotFound, openAiError, parseOpenAi, tokenText, usageOf, type ParsedRequest } from "./openai.ts";
import { createRng, hash32, naturalOutputTokens } from "./rng.ts";
import type { RequestState } from "./engine.ts";
import { createEnergyLedger } from "./ledger.ts";

/**
 * The simulated node as a real-time OpenAI-compatible server (node:http):
 * - POST /v1/completions, /v1/chat/completions (streaming SSE, one token per chunk, or not);
 *   POST /i/<instanceId>/v1/... pins a request to one instance, otherwise the least-loaded one;
 * - GET /v1/models, GET /health, GET /metrics (DCGM-exporter format); GET /i/<instanceId>/metrics:
 *   that instance's scheduler gauges as its vLLM server's /metrics (vllm-metrics.ts);
 * - GET/POST /admin/config {smClockMhz, powerLimitW, maxBatch, tp}, POST /admin/reset-clocks;
 * - GET /admin/ledger (every request's energy by the engine's own ledger, ledger.ts), GET /admin/ledger/<request id>.
 * Responses carry `x-request-id` (echoed or generated) and `x-simnode-arrival-ms` (simulated arrival).
 * The engine runs in simulated time = wall time since start × timeScale; one timer per node fires at
 * the next step end and delivers that step's tokens, so the timeline is the library's, exactly.
 */
/** The engine's knobs (NodeConfig: gpus, tp — default the model's minimum —, model, clocks, limits) and the server's own. */
export interface SimnodeOptions extends NodeConfig {
  host?: string;
  /** 0 = a random free port. */
  port?: number;
  seed?: number;
  /** Simulated ms per wall ms (2 = the node runs twice as fast as real time). Default 1. */
  timeScale?: number;
  /** Hostname label of /metrics. */
  hostname?: string;
}

export interface Simnode {
  url: string;
  metricsUrl: string;
  /** The instances as they are now (a TP change through /admin/config rebuilds them). */
  readonly instances: { id: string; gpus: number[]; model: string }[];
  /** The engine itself, for tests and in-process tools. */
  readonly node: SimNode;
  /** Simulated ms since start. */
  simNowMs(): number;
  /**
   * Idempotent; cuts the requests in flight (streams end early, as a killed server's would) and
   * closes every socket, within `graceMs` (default STOP_GRACE_MS).
   */
  stop(graceMs?: number): Promise<void>;
}

interface Live {
  parsed: ParsedRequest;
  res: ServerResponse;
  id: string;
  created: number;
  model: string;
  maxTokens: number;
  text: string[];
  closed: boolean;
}

const MAX_BODY_BYTES = 16 * 1024 * 1024;
/** A stop cuts every connection at once; the grace only bounds the server's close callback. */
export const STOP_GRACE_MS = 2000;

const adminSchema = z.object({
  smClockMhz: z.number().positive().optional(),
  powerLimitW: z.number().positive().optional(),
  maxBatch: z.number().int().positive().optional(),
  tp: z.number().int().positive().optional(),
}).strict();

export async function startSimnode(opts: SimnodeOptions = {}): Promise<Simnode> {
  const seed = opts.seed ?? 1;
  const timeScale = opts.timeScale ?? 1;
  if (!(timeScale > 0)) throw new ConfigError("timeScale", `must be > 0, got ${timeScale}`);
  const { host: _host, port: _port, seed: _seed, timeScale: _ts, hostname: _hn, ...knobs } = opts;
  const node = createSimNode(knobs);
  const ledger = createEnergyLedger(node);
  const telemetry = createGpuTelemetry(node, { seed, hostname: opts.hostname ?? hostname() });
  const t0 = performance.now();
  const simNowMs = () => (performance.now() - t0) * timeScale;
  const live = new Set<Live>();
  let requestCount = 0;
  let timer: NodeJS.Timeout | undefined;

  // Stopping: no more engine steps; requests in flight are cut (the node is going away, as a
  // killed vLLM would), then the listener closes. Forced: a connection accepted meanwhile is cut too.
  const life = createLifecycle({
    graceMs: STOP_GRACE_MS,
    graceful: async () => {
      if (timer) clearTimeout(timer);
      timer = undefined;
      for (const l of live) if (!l.res.writableEnded) l.res.destroy();
      live.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
    force: () => server.closeAllConnections(),
  });

  node.onStep((_inst, step) => {
    for (const s of step.emitted) if (s.req.tag) deliver(s.req.tag as Live, s);
  });

  function pump(): void {
    timer = undefined;
    if (life.stopping) return;
    node.advanceTo(simNowMs());
    schedule();
  }
  function schedule(): void {
    const next = node.nextEventMs();
    if (timer) clearTimeout(timer);
    timer = next === undefined || life.stopping ? undefined : setTimeout(pump, Math.max(0, Math.ceil((next - simNowMs()) / timeScale)));
  }

  function deliver(l: Live, s: RequestState): void {
    const done = s.generated >= s.req.outputTokens;
    const i = s.generated - 1;
    const finish = done ? (s.generated >= l.maxTokens ? "length" : "stop") : null;
    const text = tokenText(i);
    if (!l.parsed.stream) {
      l.text.push(text);
      if (done) {
        live.delete(l);
        if (l.closed) return;
        const usage = usageOf(s.req.promptTokens, s.generated);
        const choice = l.parsed.kind === "chat" ? { index: 0, message: { role: "assistant", content: l.text.join("") }, finish_reason: finish, logprobs: null } : { index: 0, text: l.text.join(""), finish_reason: finish, logprobs: null };
        sendJson(l.res, 200, { id: l.id, object: l.parsed.kind === "chat" ? "chat.completion" : "text_completion", created: l.created, model: l.model, choices: [choice], usage });
      }
      return;
    }
    if (!l.closed) {
      const choice = l.parsed.kind === "chat" ? { index: 0, delta: i === 0 ? { role: "assistant", content: text } : { content: text }, logprobs: null, finish_reason: finish } : { index: 0, text, logprobs: null, finish_reason: finish };
      const chunk: Record<string, unknown> = { id: l.id, object: l.parsed.kind === "chat" ? "chat.completion.chunk" : "text_completion", created: l.created, model: l.model, choices: [choice] };
      // vLLM sets a chunk's usage only for continuous_usage_stats, and serializes with exclude_unset:
      // otherwise the chunk has no `usage` key at all (not null).
      if (l.parsed.continuousUsage) chunk.usage = usageOf(s.req.promptTokens, s.generated);
      l.res.write(`data: ${JSON.stringify(chunk)}\n\n`);
      if (done) {
        if (l.parsed.includeUsage) l.res.write(`data: ${JSON.stringify({ id: l.id, object: chunk.object, created: l.created, model: l.model, choices: [], usage: usageOf(s.req.promptTokens, s.generated) })}\n\n`);
        l.res.end("data: [DONE]\n\n");
      }
    }
    if (done) live.delete(l);
  }

  function handleGenerate(kind: "completion" | "chat", instanceId: string | undefined, body: unknown, req: IncomingMessage, res: ServerResponse, requestId: string): void {
    const p = parseOpenAi(kind, body);
    if (!p.ok) return sendJson(res, 400, openAiError(p.message, p.type, 400, p.param ?? null));
    const r = p.req;
    // After the body's validation, as in vLLM (FastAPI validates the request before `_check_model`).
    if (r.model && r.model !== node.model.id) return sendJson(res, 404, modelNotFound(r.model));
    const maxCtx = node.model.maxContext;
    const maxTokens = r.maxTokens ?? (kind === "completion" ? 16 : maxCtx - r.promptTokens); // vLLM's defaults
    if (maxTokens < 1) return sendJson(res, 400, openAiError(`This model's maximum context length is ${maxCtx} tokens. However, your messages resulted in ${r.promptTokens} tokens, which leaves no room for a completion.`));
    if (r.promptTokens + maxTokens > maxCtx) {
      return sendJson(res, 400, openAiError(`This model's maximum context length is ${maxCtx} tokens. However, you requested ${r.promptTokens + maxTokens} tokens (${r.promptTokens} in the messages, ${maxTokens} in the completion).`));
    }
    if (r.promptTokens + maxTokens > node.kvCapacityTokens) return sendJson(res, 400, openAiError(`request needs ${r.promptTokens + maxTokens} tokens of KV cache; the instance holds ${node.kvCapacityTokens}`));
    const n = requestCount++;
    const outputTokens = r.ignoreEos ? maxTokens : naturalOutputTokens(createRng(hash32(String(n), seed)), maxTokens, r.minTokens);
    const l: Live = { parsed: r, res, id: `${kind === "chat" ? "chatcmpl" : "cmpl"}-${requestId}`, created: Math.floor(Date.now() / 1000), model: r.model || node.model.id, maxTokens, text: [], closed: false };
    const t = simNowMs();
    node.advanceTo(t);
    let submitted: ReturnType<SimNode["submit"]>;
    try {
      submitted = node.submit({ id: requestId, promptTokens: r.promptTokens, outputTokens, tag: l }, t, instanceId);
    } catch (err) {
      if (err instanceof ConfigError) return sendJson(res, 404, openAiError(err.message, "not_found_error", 404));
      // The engine's own limits (context, KV cache, empty request): the client's fault, never the server's end.
      if (err instanceof RangeError) return sendJson(res, 400, openAiError(err.message));
      throw err;
    }
    live.add(l);
    // When the engine saw the request, in simulated ms: lets a client line its timings up with library mode.
    res.setHeader("x-simnode-arrival-ms", t.toFixed(3));
    if (r.stream) res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" }).flushHeaders();
    res.on("close", () => {
      l.closed = true;
      // Client gone before the end: abort the request as vLLM does, so it stops holding a batch slot and KV.
      if (live.has(l) && !life.stopping) {
        live.delete(l);
        node.cancel(submitted.instance, submitted.state, simNowMs());
        schedule();
      }
    });
    req.socket.setNoDelay(true);
    schedule();
  }

  function handleAdmin(method: string, path: string, body: unknown, res: ServerResponse): void {
    const describe = () => ({ ...node.knobs(), gpuModel: node.gpu.id, model: node.model.id, gpus: node.gpuCount, supportedSmClocksMhz: node.gpu.supportedSmClocksMhz, powerLimitRangeW: [node.gpu.minPowerLimitW, node.gpu.tdpW], instances: node.instances.map((i) => ({ id: i.id, gpus: i.gpus, running: i.engine.running, waiting: i.engine.waiting, kvUsedTokens: i.engine.kvUsedTokens })), kvCapacityTokens: node.kvCapacityTokens });
    node.advanceTo(simNowMs());
    if (method === "GET" && path === "/admin/config") return sendJson(res, 200, describe());
    if (method === "POST" && (path === "/admin/config" || path === "/admin/reset-clocks")) {
      let change: z.infer<typeof adminSchema> = { smClockMhz: node.gpu.maxSmClockMhz, powerLimitW: node.gpu.tdpW };
      if (path === "/admin/config") {
        const parsed = adminSchema.safeParse(body ?? {});
        if (!parsed.success) return sendJson(res, 400, { error: `${parsed.error.issues[0]!.path.join(".") || "body"}: ${parsed.error.issues[0]!.message}` });
        change = parsed.data;
      }
      try {
        node.setKnobs(change, simNowMs());
      } catch (err) {
        if (err instanceof ConfigError) return sendJson(res, err.key === "tp" && /running/.test(err.message) ? 409 : 400, { error: err.message, key: err.key });
        throw err;
      }
      schedule();
      return sendJson(res, 200, describe());
    }
    sendJson(res, 404, { error: `no route ${method} ${path}` });
  }

  function handleLedger(path: string, res: ServerResponse): void {
    const t = simNowMs();
    node.advanceTo(t);
    schedule();
    if (path === "/admin/ledger") return sendJson(res, 200, { simNowMs: t, ...ledger.snapshot(t) });
    const id = decodeURIComponent(path.slice("/admin/ledger/".length));
    const r = ledger.get(id);
    if (!r) return sendJson(res, 404, { error: `no request "${id}" in the ledger` });
    sendJson(res, 200, r);
  }

  const server = createServer((req, res) => {
    const requestId = (typeof req.headers["x-request-id"] === "string" && req.headers["x-request-id"]) || randomUUID();
    res.setHeader("x-request-id", requestId);
    const url = new URL(req.url ?? "/", "http://sim");
    let path = url.pathname;
    let instanceId: string | undefined;
    const m = /^\/i\/([^/]+)(\/.*)$/.exec(path);
    if (m) {
      instanceId = decodeURIComponent(m[1]!);
      path = m[2]!;
    }
    const method = req.method ?? "GET";
    if (method === "GET") {
      if (path === "/health") return void res.writeHead(200).end();
      if (path === "/metrics") {
        const t = simNowMs();
        node.advanceTo(t);
        schedule();
        if (instanceId !== undefined) {
          const inst = node.instances.find((i) => i.id === instanceId);
          if (!inst) return sendJson(res, 404, openAiError(`no instance "${instanceId}"`, "not_found_error", 404));
          return void res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(renderVllmMetrics(inst.engine, { model: node.model.id, kvCapacityTokens: node.kvCapacityTokens }));
        }
        return void res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(telemetry.render(t));
      }
      if (path === "/v1/models") return sendJson(res, 200, { object: "list", data: [{ id: node.model.id, object: "model", created: 0, owned_by: "joulestream-simnode", root: node.model.id, max_model_len: node.model.maxContext }] });
      if (path === "/admin/config") return handleAdmin(method, path, undefined, res);
      if (path === "/admin/ledger" || path.startsWith("/admin/ledger/")) return handleLedger(path, res);
      return sendJson(res, 404, openAiError(`no route GET ${path}`, "not_found_error", 404));
    }
    if (method !== "POST") return sendJson(res, 405, openAiError(`method ${method} not allowed`, "invalid_request_error", 405));
    readJson(req).then(
      (body) => {
        if (path === "/v1/completions") return handleGenerate("completion", instanceId, body, req, res, requestId);
        if (path === "/v1/chat/completions") return handleGenerate("chat", instanceId, body, req, res, requestId);
        if (path.startsWith("/admin/")) return handleAdmin(method, path, body, res);
        sendJson(res, 404, openAiError(`no route POST ${path}`, "not_found_error", 404));
      },
      (err: Error) => sendJson(res, 400, openAiError(`invalid JSON body: ${err.message}`)),
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;

  return {
    url,
    metricsUrl: `${url}/metrics`,
    get instances() {
      return node.instances.map((i) => ({ id: i.id, gpus: [...i.gpus], model: node.model.id }));
    },
    node,
    simNowMs,
    stop: async (graceMs) => {
      await life.stop(graceMs);
    },
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error(`body larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on("end", () => {
      if (size === 0) return resolve(undefined);
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch (err) {
        reject(err as Error);
      }
    });
    req.on("error", reject);
  });
}

/**
 * The node's instances as an agent's request tap should see them: one serving endpoint each
 * (pinned by path), on the GPUs it runs on. The shape of the agent's `--instance` specs.
 */
export function instanceEndpoints(sim: Simnode, listen = "127.0.0.1:0"): { id: string; gpus: number[]; model: string; upstream: string; listen: string }[] {
  return sim.instances.map((i) => ({ id: i.id, gpus: i.gpus, model: i.model, upstream: `${sim.url}/i/${i.id}`, listen }));
}
