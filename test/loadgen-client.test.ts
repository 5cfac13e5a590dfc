import test from "ava";
import type { LoadResult } from "../shared/messages/load.ts";
import { runLoad, type WorkloadRequest } from "../services/loadgen/mod.ts";
import { startEchoServer } from "./helpers/echo-server.ts";

async function* fixed(n: number, o: { everyMs?: number; prompt?: number; output?: number; cls?: string } = {}): AsyncGenerator<WorkloadRequest> {
  for (let i = 0; i < n; i++) yield { index: i, offsetMs: i * (o.everyMs ?? 0), promptTokens: o.prompt ?? 20, outputTokens: o.output ?? 4, workloadClass: o.cls ?? "short-short" };
}

const collect = () => {
  const results: LoadResult[] = [];
  return { results, onResult: (r: LoadResult) => void results.push(r) };
};

test("loadgen - a dead target gives counted errors and the run completes", async (t) => {
  const server = await startEchoServer();
  t.teardown(() => server.stop());
  const c = collect();
  const s = await runLoad({ source: fixed(20, { everyMs: 1 }), targets: [server.url, "http://127.0.0.1:1"], runId: "dead", onResult: c.onResult });
  t.is(s.requests, 20);
  t.is(s.ok, 10);
  t.is(s.errors, 10);
  t.true(c.results.filter((r) => r.target === "http://127.0.0.1:1").every((r) => r.status === "error" && /ECONNREFUSED/.test(r.error ?? "")));
  t.is(server.received.length, 10, "requests alternate between the targets");
});

test("loadgen - an HTTP error status is an error result carrying the status and message", async (t) => {
  const server = await startEchoServer({ failStatus: 503 });
  t.teardown(() => server.stop());
  const c = collect();
  const s = await runLoad({ source: fixed(3), targets: [server.url], runId: "e503", onResult: c.onResult });
  t.is(s.errors, 3);
  t.true(c.results.every((r) => r.httpStatus === 503 && r.status === "error" && /echo server set to fail/.test(r.error!)));
});

test("loadgen - a request that outlives its timeout is a timeout result", async (t) => {
  const server = await startEchoServer({ ttftMs: 5000 });
  t.teardown(() => server.stop());
  const c = collect();
  const s = await runLoad({ source: fixed(2), targets: [server.url], runId: "slow", timeoutMs: 150, onResult: c.onResult });
  t.is(s.timeouts, 2);
  t.true(c.results.every((r) => r.status === "timeout" && r.e2eMs === undefined));
});

test("loadgen - TTFT, every inter-token gap, TPOT and E2E are measured from the stream", async (t) => {
  const server = await startEchoServer({ ttftMs: 40, itlMs: 8 });
  t.teardown(() => server.stop());
  const c = collect();
  await runLoad({ source: fixed(3, { output: 11 }), targets: [server.url], runId: "timing", onResult: c.onResult });
  for (const r of c.results) {
    t.is(r.status, "ok");
    t.is(r.outputTokens, 11);
    t.is(r.promptTokens, 20);
    t.true(r.ttftMs! >= 39 && r.ttftMs! < 400, `ttft ${r.ttftMs}`);
    t.is(r.itl!.count, 10, "one gap between each pair of the 11 tokens");
    t.true(r.itl!.p50Ms >= 7 && r.itl!.p50Ms < 100, `itl p50 ${r.itl!.p50Ms}`);
    t.true(r.itl!.maxMs >= r.itl!.p99Ms && r.itl!.p99Ms >= r.itl!.p50Ms);
    t.true(Math.abs(r.tpotMs! - (r.e2eMs! - r.ttftMs!) / 10) < 1e-9);
    t.true(r.e2eMs! >= r.ttftMs! + 10 * 7);
  }
});

test("loadgen - requests carry the ids, run, class and vLLM length controls", async (t) => {
  const server = await startEchoServer({ keepPrompts: true });
  t.teardown(() => server.stop());
  await runLoad({ source: fixed(3, { prompt: 700, output: 5, cls: "medium-short" }), targets: [server.url], runId: "hdr", model: "m1" });
  const got = server.received.sort((a, b) => a.requestId!.localeCompare(b.requestId!));
  t.deepEqual(got.map((r) => r.requestId), ["hdr-0", "hdr-1", "hdr-2"]);
  t.true(got.every((r) => r.runId === "hdr" && r.workloadClass === "medium-short" && r.path === "/v1/completions"));
  t.true(got.every((r) => r.prompt!.length === 700 && r.maxTokens === 5 && r.minTokens === 5 && r.ignoreEos === true && r.stream && r.includeUsage));
  t.not(got[0]!.prompt!.join(), got[1]!.prompt!.join(), "prompts without hash ids are not shared");
});

test("loadgen - chat prompts are text calibrated to the tokenizer ratio", async (t) => {
  const server = await startEchoServer({ keepPrompts: true });
  t.teardown(() => server.stop());
  const c = collect();
  await runLoad({ source: fixed(4, { prompt: 1234 }), targets: [server.url], runId: "chat", api: "chat", charsPerToken: 4, chatOverheadTokens: 0, onResult: c.onResult });
  t.true(server.received.every((r) => r.path === "/v1/chat/completions" && r.text!.length === 1234 * 4));
  t.true(c.results.every((r) => r.promptTokens === 1234 && r.status === "ok"));
});

test("loadgen - sends are open loop: a slow server does not delay later arrivals", async (t) => {
  const server = await startEchoServer({ ttftMs: 400 });
  t.teardown(() => server.stop());
  const c = collect();
  await runLoad({ source: fixed(10, { everyMs: 10 }), targets: [server.url], runId: "open", onResult: c.onResult });
  const lastSent = Math.max(...c.results.map((r) => r.sentMs));
  const firstDone = Math.min(...c.results.map((r) => r.sentMs + r.e2eMs!));
  t.true(lastSent < firstDone, "every request left before the first answer came back");
  t.is(server.maxConcurrent, 10);
});

test("loadgen - a concurrency cap holds requests back and their lag shows it", async (t) => {
  const server = await startEchoServer({ ttftMs: 60 });
  t.teardown(() => server.stop());
  const c = collect();
  const s = await runLoad({ source: fixed(6), targets: [server.url], runId: "cap", concurrency: 2, onResult: c.onResult });
  t.is(server.maxConcurrent, 2);
  t.is(s.ok, 6);
  t.true(s.lagMs.max >= 100, `the last pair waited two rounds (lag max ${s.lagMs.max})`);
});

test("loadgen - closed loop keeps exactly N requests in flight, back to back", async (t) => {
  const server = await startEchoServer({ ttftMs: 20 });
  t.teardown(() => server.stop());
  const c = collect();
  const s = await runLoad({ source: fixed(12, { everyMs: 10_000 }), targets: [server.url], runId: "closed", concurrency: 3, closedLoop: true, onResult: c.onResult });
  t.is(s.ok, 12);
  t.is(server.maxConcurrent, 3);
  t.true(s.durationS < 5, "arrival offsets are ignored in closed loop");
});

test("loadgen - aborting stops sending, in-flight requests end as aborted, the run resolves", async (t) => {
  const server = await startEchoServer({ ttftMs: 10_000 });
  t.teardown(() => server.stop());
  const abort = new AbortController();
  const c = collect();
  const run = runLoad({ source: fixed(100, { everyMs: 50 }), targets: [server.url], runId: "abort", signal: abort.signal, onResult: c.onResult, onSent: (w) => w.index === 2 && abort.abort() });
  const s = await run;
  t.is(s.requests, 3);
  t.is(s.aborted, 3);
});

test("loadgen - goodput counts requests meeting every SLO", async (t) => {
  const server = await startEchoServer({ ttftMs: 30 });
  t.teardown(() => server.stop());
  const tight = await runLoad({ source: fixed(4), targets: [server.url], runId: "slo", slo: { ttftMs: 5 } });
  t.is(tight.goodput!.good, 0);
  const loose = await runLoad({ source: fixed(4), targets: [server.url], runId: "slo2", slo: { ttftMs: 5000, tpotMs: 1000 } });
  t.is(loose.goodput!.good, 4);
  t.is(loose.goodput!.fraction, 1);
});
