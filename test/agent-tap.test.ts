import test from "ava";
import { createServer, request, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createTcpServer, Socket } from "node:net";
import { gzipSync } from "node:zlib";
import type { AddressInfo } from "node:net";
import { startRequestTap, type RequestTap } from "../services/agent/request-tap.ts";
import { createWorkTracker } from "../services/agent/work-tracker.ts";
import { instanceEndpoints, startSimnode, type Simnode } from "../services/simnode/server.ts";
import { MAX_REQUEST_ID_CHARS, requestEvent, systemClock, withTimeout, type RequestEvent } from "../shared/mod.ts";
import { freePort } from "../infra/ports.ts";
import { startEchoServer } from "./helpers/echo-server.ts";
import { pause, until } from "./helpers/until.ts";

/** The request tap in front of the simulated node: what clients see, and what the tap records. */
async function setup(t: import("ava").ExecutionContext, upstream?: string, opts: { maxBodyBytes?: number; node?: string } = {}) {
  let sim: Simnode | undefined;
  if (!upstream) {
    sim = await startSimnode({ gpus: 1, tp: 1, model: "llama-3-8b", seed: 9 });
    t.teardown(() => sim!.stop());
  }
  const inst = sim ? instanceEndpoints(sim)[0]! : { id: "i0", gpus: [0], upstream: upstream!, listen: "127.0.0.1:0" };
  const events: RequestEvent[] = [];
  const { node = "n1", ...tapOpts } = opts;
  const tracker = createWorkTracker(node, [inst]);
  const tap: RequestTap = await startRequestTap({ node, instance: inst, host: "127.0.0.1", port: 0, clock: systemClock(), tracker, emit: (e) => events.push(e), ...tapOpts });
  t.teardown(() => tap.close());
  return { tap, events, tracker, inst };
}

/** A stand-in inference server: `handle` gets each request with its whole body. */
async function serve(t: import("ava").ExecutionContext, handle: (req: IncomingMessage, body: string, res: ServerResponse) => void): Promise<string> {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c));
    req.on("end", () => handle(req, body, res));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const sseEvents = (text: string) => text.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6));

test("tap - streaming completion: tokens pass through, lifecycle and token counts are recorded", async (t) => {
  const { tap, events, tracker, inst } = await setup(t);
  const res = await fetch(`${tap.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": "req-1", "x-joulestream-run": "run9", "x-joulestream-class": "short-short" },
    body: JSON.stringify({ model: "llama-3-8b", prompt: Array.from({ length: 100 }, (_, i) => i), max_tokens: 12, ignore_eos: true, stream: true }),
  });
  t.is(res.headers.get("x-request-id"), "req-1");
  const data = sseEvents(await res.text());
  t.is(data.at(-1), "[DONE]");
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  // The client did not ask for usage: the usage-only chunk the tap asked for is not passed on.
  t.true(chunks.every((c) => c.choices.length > 0));
  t.is(chunks.length, 12);
  const kinds = events.map((e) => e.event);
  t.deepEqual(kinds, ["start", "first_token", "end"]);
  const start = events[0]!;
  t.like(start, { requestId: "req-1", runId: "run9", workloadClass: "short-short", promptTokensHint: 100, stream: true });
  t.like(events[2]!, { status: "ok", promptTokens: 100, outputTokens: 12, httpStatus: 200 });
  const w = tracker.closeWindow(0, 1)[0]!;
  t.is(w.instance, inst.id);
  t.deepEqual(w.requests, [{ requestId: "req-1", prefillTokens: 100, prefillCtxTokens: (100 * 99) / 2, decodeTokens: 11, decodeCtxTokens: 11 * 101 + 55 }]); // contexts 101…111
});

test("tap - a server that writes the whole stream at once: every token and [DONE] reach the client, the usage chunk does not", async (t) => {
  const echo = await startEchoServer({ itlMs: 0 }); // all chunks, the usage chunk and [DONE] in one write
  t.teardown(() => echo.stop());
  const { tap, events } = await setup(t, echo.url);
  const res = await fetch(`${tap.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "m", prompt: [1, 2, 3], max_tokens: 8, stream: true }),
  });
  const data = sseEvents(await res.text());
  t.is(data.at(-1), "[DONE]");
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  t.is(chunks.length, 8);
  t.true(chunks.every((c) => c.choices.length === 1));
  t.true(echo.received[0]!.includeUsage, "the tap asked the server for usage");
  t.like(events.at(-1)!, { event: "end", status: "ok", promptTokens: 3, outputTokens: 8 });
});

test("tap - a response that comes whole leaves whole: its end goes in the same write as its last bytes (one wake-up of the client, as direct)", async (t) => {
  const echo = await startEchoServer({ itlMs: 0 });
  t.teardown(() => echo.stop());
  const plain = await serve(t, (_req, _body, res) => {
    res.writeHead(200, { "content-type": "application/json" }); // chunked: no content-length
    res.end(JSON.stringify({ choices: [{ text: "hi" }], usage: { prompt_tokens: 2, completion_tokens: 1 } }));
  });
  // The writes of the tap's side of client connections, counted where Node hands them to libuv.
  const proto = Socket.prototype as unknown as Record<"_write" | "_writev", (...a: unknown[]) => unknown>;
  const original = { _write: proto._write, _writev: proto._writev };
  let writes = 0;
  let tapPort = -1;
  for (const name of ["_write", "_writev"] as const) {
    proto[name] = function (this: Socket, ...a: unknown[]) {
      if (this.localPort === tapPort) writes++;
      return original[name].apply(this, a);
    };
  }
  t.teardown(() => Object.assign(proto, original));
  for (const [upstream, stream, path] of [[echo.url, true, "/v1/completions"], [plain, false, "/v1/completions"], [plain, false, "/health"]] as const) {
    const { tap } = await setup(t, upstream);
    tapPort = Number(new URL(tap.url).port);
    writes = 0;
    for (let i = 0; i < 5; i++) {
      const text = await new Promise<string>((resolve, reject) => {
        const req = request(`${tap.url}${path}`, { method: "POST", headers: { "content-type": "application/json" } }, (res) => {
          let s = "";
          res.setEncoding("utf8").on("data", (c: string) => (s += c)).on("end", () => resolve(s));
        });
        req.on("error", reject);
        req.end(JSON.stringify({ model: "m", prompt: [1, 2, 3], max_tokens: 8, stream }));
      });
      t.true(text.length > 0);
    }
    t.is(writes, 5, `${upstream} ${path}: one write per response`);
  }
});

test("tap - a client that asked for usage gets it; requests without an id get one", async (t) => {
  const { tap, events } = await setup(t);
  const res = await fetch(`${tap.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "llama-3-8b", messages: [{ role: "user", content: "x".repeat(400) }], max_tokens: 5, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
  });
  const id = res.headers.get("x-request-id");
  t.truthy(id);
  const chunks = sseEvents(await res.text()).slice(0, -1).map((d) => JSON.parse(d));
  t.true(chunks.some((c) => c.choices.length === 0 && c.usage?.completion_tokens === 5));
  t.like(events.at(-1)!, { event: "end", requestId: id!, outputTokens: 5, status: "ok" });
});

test("tap - a client id no message could carry is replaced by the tap's own, which the client gets back", async (t) => {
  const { tap, events } = await setup(t, undefined, { node: "n".repeat(128) }); // the longest node id
  const ask = async (id: string) => {
    const res = await fetch(`${tap.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": id },
      body: JSON.stringify({ model: "llama-3-8b", prompt: [1, 2, 3], max_tokens: 2, ignore_eos: true, stream: true }),
    });
    await res.text();
    return res.headers.get("x-request-id")!;
  };
  const longest = "a".repeat(MAX_REQUEST_ID_CHARS);
  t.is(await ask(longest), longest, "the longest id a message carries is kept");
  const replaced = await ask("b".repeat(MAX_REQUEST_ID_CHARS + 1));
  t.regex(replaced, /^[0-9a-f-]{36}$/);
  t.deepEqual([...new Set(events.map((e) => e.requestId))], [longest, replaced]);
  for (const e of events) t.true(requestEvent.safeParse(e).success, `${e.event} of ${e.requestId.slice(0, 8)}…: ${requestEvent.safeParse(e).error?.message}`);
});

test("tap - malformed numbers from a client or a server never make an event the analyzer must refuse", async (t) => {
  // A broken server: usage with a float, a negative and a string, streamed and not.
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      if (JSON.parse(body).stream) {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write('data: {"choices":[{"text":"a"}]}\n\n');
        res.write('data: {"choices":[],"usage":{"prompt_tokens":"3","completion_tokens":2.5}}\n\n');
        res.end("data: [DONE]\n\n");
      } else {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ choices: [{ text: "a" }], usage: { prompt_tokens: -3, completion_tokens: 1e300 } }));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { tap, events } = await setup(t, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  for (const [stream, max] of [[true, -1], [false, 1.5], [true, "9"]] as const) {
    const res = await fetch(`${tap.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "hello", max_tokens: max, stream }) });
    t.is(res.status, 200);
    await res.text();
  }
  t.is(events.filter((e) => e.event === "end").length, 3);
  for (const e of events) t.true(requestEvent.safeParse(e).success, `${e.event}: ${requestEvent.safeParse(e).error?.message}`);
  t.true(events.every((e) => e.event !== "start" || e.maxTokens === undefined), "no max_tokens that is not a count");
});

test("tap - non-streaming requests are recorded from the response's usage", async (t) => {
  const { tap, events, tracker } = await setup(t);
  const res = await fetch(`${tap.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": "ns" },
    body: JSON.stringify({ model: "llama-3-8b", prompt: Array.from({ length: 30 }, () => 7), max_tokens: 9, ignore_eos: true }),
  });
  const body = (await res.json()) as { usage: { completion_tokens: number } };
  t.is(body.usage.completion_tokens, 9);
  t.like(events.at(-1)!, { event: "end", promptTokens: 30, outputTokens: 9, stream: undefined });
  t.deepEqual(tracker.closeWindow(0, 1)[0]!.requests, [{ requestId: "ns", prefillTokens: 30, prefillCtxTokens: (30 * 29) / 2, decodeTokens: 8, decodeCtxTokens: 8 * 31 + 28 }]); // contexts 31…38
});

test("tap - upstream down: a clear 502 JSON error, recorded as an upstream error", async (t) => {
  const port = await freePort();
  const { tap, events } = await setup(t, `http://127.0.0.1:${port}`);
  const res = await fetch(`${tap.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "hi", stream: true }) });
  t.is(res.status, 502);
  const body = (await res.json()) as { error: { type: string; message: string } };
  t.is(body.error.type, "upstream_unavailable");
  t.regex(body.error.message, /unreachable/);
  t.like(events.at(-1)!, { event: "end", status: "error", httpStatus: 502 });
  t.is(tap.stats().upstreamErrors, 1);
});

test("tap - its own 502 has the server's error shape (message, type, param, code) and the request's x-request-id", async (t) => {
  const port = await freePort();
  const { tap, events } = await setup(t, `http://127.0.0.1:${port}`);
  for (const [clientId, stream] of [["mine-1", true], [undefined, false]] as const) {
    const res = await fetch(`${tap.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json", ...(clientId ? { "x-request-id": clientId } : {}) }, body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], stream }) });
    t.is(res.status, 502);
    const id = res.headers.get("x-request-id");
    t.is(id, events.filter((e) => e.event === "end").at(-1)!.requestId, "the id the request is recorded under");
    if (clientId) t.is(id, clientId);
    const body = (await res.json()) as { error: Record<string, unknown> };
    t.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
    t.like(body.error, { type: "upstream_unavailable", param: null, code: 502 });
  }
});

test("tap - a server that dies mid-response: the client's connection ends as it would direct (no hang), recorded as an upstream error", async (t) => {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('data: {"id":"x","choices":[{"index":0,"text":"a"}]}\n\n');
      void pause(20).then(() => res.socket!.destroy()); // the server crashes after one token
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { tap, events } = await setup(t, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const outcome = (path: string) =>
    withTimeout(
      fetch(`${tap.url}${path}`, { method: "POST", headers: { "x-request-id": path }, body: JSON.stringify({ prompt: [1, 2, 3], stream: true }) }).then(
        (r) => r.text().then(() => "complete", () => "ended early"),
        () => "ended early",
      ),
      5000,
      "the response",
    ).catch(() => "still open after 5 s");
  t.is(await outcome("/v1/completions"), "ended early");
  t.is(await outcome("/v1/other"), "ended early", "untracked paths too");
  const ends = events.filter((e) => e.event === "end");
  t.is(ends.length, 1);
  t.like(ends[0]!, { requestId: "/v1/completions", status: "error", httpStatus: 200, outputTokens: 1, promptTokens: 3 });
  t.regex((ends[0] as { error: string }).error, /before it was complete/);
  t.deepEqual(tap.stats(), { requests: 1, active: 0, aborted: 0, upstreamErrors: 1, rejected: 0 });
});

test("tap - oversized bodies are refused with 413 before reaching the server", async (t) => {
  const { tap, events } = await setup(t, undefined, { maxBodyBytes: 1000 });
  const res = await fetch(`${tap.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "x".repeat(5000) }) });
  t.is(res.status, 413);
  t.is(((await res.json()) as { error: { type: string } }).error.type, "request_too_large");
  t.is(events.length, 0);
});

test("tap - a client that disconnects mid-stream is recorded as aborted", async (t) => {
  const { tap, events } = await setup(t);
  const url = new URL(`${tap.url}/v1/completions`);
  const firstChunk = new Promise<void>((resolve) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers: { "content-type": "application/json" } }, (res) => {
      res.once("data", () => {
        req.destroy(); // first token received: hang up
        resolve();
      });
    });
    req.on("error", () => {});
    req.end(JSON.stringify({ prompt: [1, 2, 3], max_tokens: 2000, ignore_eos: true, stream: true }));
  });
  await withTimeout(firstChunk, 10_000, "the first chunk");
  await until(() => events.some((e) => e.event === "end"), 5000, "the request's end event");
  const end = events.find((e) => e.event === "end");
  t.like(end!, { status: "aborted" });
  t.true((end as { outputTokens: number }).outputTokens < 2000);
  t.is(tap.stats().aborted, 1);
});

test("tap - other paths pass through untouched and unrecorded", async (t) => {
  const { tap, events } = await setup(t);
  const res = await fetch(`${tap.url}/v1/models`);
  t.is(res.status, 200);
  t.truthy(((await res.json()) as { data: unknown[] }).data.length);
  t.is(events.length, 0);
});

test("tap - headers: hop-by-hop ones stay on their side, repeated ones (set-cookie) pass whole, the tap's x-request-id replaces the client's", async (t) => {
  const { createServer } = await import("node:http");
  let seen: string[] = [];
  const upstreamServer = createServer((req, res) => {
    seen = req.rawHeaders;
    req.resume();
    req.on("end", () => {
      res.writeHead(200, ["Content-Type", "application/json", "Set-Cookie", "a=1", "Set-Cookie", "b=2", "X-Upstream", "u", "Keep-Alive", "timeout=1", "X-Request-Id", "upstream-id"]);
      res.end(JSON.stringify({ usage: { prompt_tokens: 3, completion_tokens: 1 } }));
    });
  });
  await new Promise<void>((r) => upstreamServer.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => upstreamServer.close(() => r())));
  const upstreamUrl = `http://127.0.0.1:${(upstreamServer.address() as import("node:net").AddressInfo).port}`;
  const { tap } = await setup(t, upstreamUrl);
  const tapPort = new URL(tap.url).port;
  const body = JSON.stringify({ model: "m", prompt: [1, 2, 3], max_tokens: 1 });
  const got = await new Promise<{ raw: string[] }>((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port: tapPort, method: "POST", path: "/v1/completions", headers: ["Host", `127.0.0.1:${tapPort}`, "Content-Type", "application/json", "Content-Length", String(body.length), "X-Request-Id", "client-id", "Keep-Alive", "timeout=99", "X-Client", "c"] },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ raw: res.rawHeaders }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
  const pairs = (raw: string[]) => Array.from({ length: raw.length / 2 }, (_, i) => [raw[2 * i]!.toLowerCase(), raw[2 * i + 1]!] as const);
  const up = pairs(seen);
  t.deepEqual(up.filter(([k]) => k === "x-request-id"), [["x-request-id", "client-id"]], "the client's id, once");
  t.deepEqual(up.filter(([k]) => k === "host"), [["host", new URL(upstreamUrl).host]]);
  t.true(up.some(([k, v]) => k === "x-client" && v === "c"));
  t.false(up.some(([k, v]) => k === "keep-alive" && v === "timeout=99"), "the client's keep-alive is not forwarded");
  const down = pairs(got.raw);
  t.deepEqual(down.filter(([k]) => k === "set-cookie").map(([, v]) => v), ["a=1", "b=2"]);
  t.true(down.some(([k, v]) => k === "x-upstream" && v === "u"));
  t.deepEqual(down.filter(([k]) => k === "x-request-id").map(([, v]) => v), ["client-id"], "the request's id, not the upstream's");
  t.false(down.some(([k, v]) => k === "keep-alive" && v === "timeout=1"), "the server's keep-alive is not forwarded");
});

test("tap - a client that does not read: the server is slowed as it would be direct, the tap does not hold the response in memory", async (t) => {
  let written = 0;
  const limit = 128 * 2 ** 20;
  const url = await serve(t, (_req, _body, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    const chunk = Buffer.from(`data: {"choices":[{"text":"${"x".repeat(64 * 1024)}"}]}\n\n`);
    const pump = () => {
      while (written < limit && !res.destroyed) {
        written += chunk.length;
        if (!res.write(chunk)) return void res.once("drain", pump);
      }
      res.end();
    };
    pump();
  });
  const { tap } = await setup(t, url);
  const u = new URL(tap.url);
  const req = request({ host: u.hostname, port: u.port, path: "/v1/completions", method: "POST" }, () => {}); // never reads
  req.on("error", () => {});
  req.end(JSON.stringify({ prompt: "hi", stream: true }));
  await pause(1500); // the client must stay connected, reading nothing, while the server could write on
  req.destroy();
  t.true(written < 32 * 2 ** 20, `the server wrote ${(written / 2 ** 20).toFixed(0)} MiB for a client that read nothing`);
});

test("tap - an error event after the 200 (vLLM's mid-stream failure) records the request as an error", async (t) => {
  const url = await serve(t, (_req, _body, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write('data: {"choices":[{"index":0,"text":"a"}]}\n\n');
    res.write('data: {"error":{"object":"error","message":"CUDA out of memory","type":"InternalServerError","code":500}}\n\n');
    res.end("data: [DONE]\n\n");
  });
  const { tap, events } = await setup(t, url);
  const res = await fetch(`${tap.url}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt: "hi", stream: true }) });
  t.regex(await res.text(), /CUDA out of memory/, "the client sees the event, as it would direct");
  t.like(events.at(-1)!, { event: "end", status: "error", httpStatus: 200, error: "CUDA out of memory", outputTokens: 1 });
});

test("tap - what the server answers decides: a stream for `\"stream\": \"true\"` is counted as a stream; the tap asks for an uncompressed body", async (t) => {
  const seen: IncomingMessage["headers"][] = [];
  const url = await serve(t, (req, body, res) => {
    seen.push(req.headers);
    const j = JSON.parse(body);
    if (j.stream === true || j.stream === "true") {
      res.writeHead(200, { "content-type": "text/event-stream" });
      for (let i = 0; i < 5; i++) res.write(`data: {"choices":[{"index":0,"text":"t${i}"}]}\n\n`);
      return res.end("data: [DONE]\n\n");
    }
    const json = JSON.stringify({ choices: [{ text: "x" }], usage: { prompt_tokens: 7, completion_tokens: 500 } });
    const gzip = /gzip/.test(String(req.headers["accept-encoding"]));
    res.writeHead(200, { "content-type": "application/json", ...(gzip ? { "content-encoding": "gzip" } : {}) });
    res.end(gzip ? gzipSync(json) : json);
  });
  const { tap, events } = await setup(t, url);
  t.regex(await (await fetch(`${tap.url}/v1/completions`, { method: "POST", headers: { "x-request-id": "s" }, body: JSON.stringify({ prompt: "hi", stream: "true" }) })).text(), /t4/);
  // fetch asks for gzip, as Python clients do: the tap's own reading needs the plain body.
  const res = await fetch(`${tap.url}/v1/completions`, { method: "POST", headers: { "x-request-id": "g", "accept-encoding": "gzip, deflate" }, body: JSON.stringify({ prompt: "hi" }) });
  t.is(((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, 500);
  const ends = events.filter((e) => e.event === "end");
  t.like(ends[0]!, { requestId: "s", status: "ok", outputTokens: 5 });
  t.true(events.some((e) => e.requestId === "s" && e.event === "first_token"));
  t.like(ends[1]!, { requestId: "g", status: "ok", outputTokens: 500, promptTokens: 7 });
  t.true(seen.every((h) => h["accept-encoding"] === "identity"));
});

test("tap - a request id the tap has seen lately (a retry, a gateway's fixed id) is replaced, so two requests never merge", async (t) => {
  const url = await serve(t, (_req, body, res) => {
    // A server as slow as the request asks: the first must still be running when the second comes.
    void pause(JSON.parse(body).delay as number).then(() => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ choices: [{ text: "x" }], usage: { prompt_tokens: 10, completion_tokens: 10 } }));
    });
  });
  const { tap, events, tracker } = await setup(t, url);
  const ask = (delay: number) => fetch(`${tap.url}/v1/completions`, { method: "POST", headers: { "x-request-id": "retry-me" }, body: JSON.stringify({ prompt: "hi", delay }) });
  const slow = ask(800);
  await until(() => events.some((e) => e.event === "start"), 5000, "the tap to see the first request");
  const second = await ask(0);
  await second.text();
  const w = tracker.closeWindow(0, 1)[0]!;
  t.is(w.inFlight, 1, "the first is still running");
  const first = await slow;
  await first.text();
  t.is(first.headers.get("x-request-id"), "retry-me");
  const renamed = second.headers.get("x-request-id")!;
  t.not(renamed, "retry-me", "the second gets the tap's id, and is told");
  const ids = events.map((e) => e.msgId);
  t.is(new Set(ids).size, ids.length, "every event its own msgId");
  t.deepEqual(events.filter((e) => e.event === "end").map((e) => e.requestId).sort(), [renamed, "retry-me"].sort());
});

test("tap - a client's stream_options is merged without rewriting the rest of its body (a 64-bit seed arrives as sent)", async (t) => {
  let got = "";
  const url = await serve(t, (_req, body, res) => {
    got = body;
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.end("data: [DONE]\n\n");
  });
  const { tap } = await setup(t, url);
  const body = '{"prompt":"hi","stream":true,"stream_options":{"include_usage":false,"x":1},"seed":18446744073709551557}';
  await (await fetch(`${tap.url}/v1/completions`, { method: "POST", body })).text();
  t.true(got.startsWith(body.slice(0, -1)), got);
  t.deepEqual(JSON.parse(got).stream_options, { include_usage: true, x: 1, continuous_usage_stats: true }, "the last key wins, as in Python's json");
});

test("tap - a client that hangs up before the server answers is aborted, not an upstream error; parts of chat content count toward the prompt", async (t) => {
  let arrived = false;
  const url = await serve(t, (_req, _body, res) => {
    arrived = true;
    // A server slow to answer: the client hangs up first.
    void pause(1000).then(() => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  const { tap, events } = await setup(t, url);
  const u = new URL(tap.url);
  const req = request({ host: u.hostname, port: u.port, path: "/v1/chat/completions", method: "POST" });
  req.on("error", () => {});
  req.end(JSON.stringify({ stream: true, messages: [{ role: "user", content: [{ type: "text", text: "x".repeat(4000) }, { type: "image_url", image_url: { url: "data:," } }] }] }));
  await until(() => arrived, 5000, "the request to reach the server");
  req.destroy();
  await until(() => events.at(-1)?.event === "end", 900, "the hang-up recorded, before the server answers");
  t.like(tap.stats(), { aborted: 1, upstreamErrors: 0 });
  t.like(events[0]!, { event: "start", promptTokensHint: 1000 });
  t.like(events.at(-1)!, { event: "end", status: "aborted", promptTokens: 1000 });
});

test("tap - an https:// upstream is spoken to over TLS; anything else is refused at start", async (t) => {
  let first: Buffer | undefined;
  const tcp = createTcpServer((s) => s.once("data", (d: Buffer) => {
    first = d;
    s.destroy();
  }));
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", r));
  t.teardown(() => tcp.close());
  const { tap } = await setup(t, `https://127.0.0.1:${(tcp.address() as AddressInfo).port}`);
  const res = await fetch(`${tap.url}/v1/completions`, { method: "POST", body: JSON.stringify({ prompt: "hi" }) });
  t.is(res.status, 502);
  t.is(first?.[0], 0x16, "a TLS handshake, not a plain-text POST");
  await t.throwsAsync(() => setup(t, "ftp://127.0.0.1:21"), { message: /http:\/\/ or https:\/\// });
});

test("tap - close lets a stream in flight finish within its grace, then cuts what is still open", async (t) => {
  // The server streams 5 chunks 100 ms apart to the first request, and never finishes the second.
  const upstream = await serve(t, (req, _body, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    if (req.headers["x-request-id"] === "slow-forever") return void res.write("data: {}\n\n");
    let n = 0;
    const tick = setInterval(() => {
      res.write(`data: {"choices":[{"text":"x${n}"}]}\n\n`);
      if (++n === 5) {
        clearInterval(tick);
        res.end("data: [DONE]\n\n");
      }
    }, 100);
  });
  const { tap } = await setup(t, upstream, {});
  const body = JSON.stringify({ model: "m", prompt: "hi", stream: true });
  const res = await fetch(`${tap.url}/v1/completions`, { method: "POST", headers: { "x-request-id": "finishing" }, body });
  const reader = res.body!.getReader();
  const text = new TextDecoder();
  let got = text.decode((await reader.read()).value, { stream: true }); // the first chunk: mid-stream
  const finishing = (async () => {
    for (let r = await reader.read(); !r.done; r = await reader.read()) got += text.decode(r.value, { stream: true });
    return got + text.decode();
  })();
  const t0 = Date.now();
  const closing = tap.close();
  t.is(sseEvents(await finishing).at(-1), "[DONE]", "the stream in flight ended as the server ended it");
  await closing;
  t.true(Date.now() - t0 < 1500, "close() returned once it was done, before the grace ran out");
  await t.throwsAsync(fetch(`${tap.url}/v1/completions`, { method: "POST", body }), undefined, "no new request after close");
});

test("tap - close cuts a request that does not finish within the grace, and returns", async (t) => {
  const upstream = await serve(t, (_req, _body, res) => {
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write("data: {}\n\n"); // and nothing more, ever
  });
  const inst = { id: "i0", gpus: [0], upstream, listen: "127.0.0.1:0" };
  const tap = await startRequestTap({ node: "n1", instance: inst, host: "127.0.0.1", port: 0, clock: systemClock(), tracker: createWorkTracker("n1", [inst]), emit: () => {}, closeGraceMs: 300 });
  const res = await fetch(`${tap.url}/v1/completions`, { method: "POST", body: JSON.stringify({ model: "m", prompt: "hi", stream: true }) });
  const reading = res.text().then(() => "ended", () => "cut");
  const t0 = Date.now();
  await tap.close();
  const took = Date.now() - t0;
  t.true(took >= 250 && took < 2000, `close() took ${took} ms with a 300 ms grace`);
  t.is(await reading, "cut");
});
