import test from "ava";
import { TRACES_DIR } from "./helpers/traces.ts";
import { readFileSync } from "node:fs";
import { systemClock } from "../shared/units.ts";
import type { LoadResult } from "../shared/messages/load.ts";
import { azureTrace, mooncakeTrace, runLoad } from "../services/loadgen/mod.ts";
import { startEchoServer } from "./helpers/echo-server.ts";

/**
 * Acceptance: every row of the carried traces (load/traces: Azure 2023 whole, the first 1,000 rows of
 * each Mooncake file) replays against a local server, with the lengths of the row and the send
 * times of the trace.
 */
const TRACES = TRACES_DIR;
const AZURE = ["AzureLLMInferenceTrace_conv.csv", "AzureLLMInferenceTrace_code.csv"];
const MOONCAKE = ["conversation_trace.jsonl", "synthetic_trace.jsonl"];

/** An independent reading of an Azure row (whole file: fine in a test), for comparison. */
function azureRows(path: string): { tMs: number; prompt: number; output: number }[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .slice(1)
    .filter((l) => l.trim())
    .map((l) => {
      const [ts, ctx, gen] = l.split(",");
      const [whole, frac = "0"] = ts!.split(".");
      return { tMs: Date.parse(whole!.replace(" ", "T") + "Z") + Number(`0.${frac}`) * 1000, prompt: Number(ctx), output: Number(gen) };
    });
}

function mooncakeRows(path: string): { tMs: number; prompt: number; output: number }[] {
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => {
      const o = JSON.parse(l) as { timestamp: number; input_length: number; output_length: number };
      return { tMs: o.timestamp, prompt: o.input_length, output: o.output_length };
    });
}

async function replay(t: import("ava").ExecutionContext, rows: { tMs: number; prompt: number; output: number }[], source: (speedup: number) => AsyncIterable<import("../services/loadgen/mod.ts").WorkloadRequest>, speedup: number) {
  const server = await startEchoServer({ tokensPerChunk: 1 << 20 });
  t.teardown(() => server.stop());
  const clock = systemClock();
  const startAtMs = clock.nowMs() + 100;
  const results: LoadResult[] = [];
  const summary = await runLoad({ source: source(speedup), targets: [server.url], runId: "replay", startAtMs, clock, onResult: (r) => void results.push(r) });

  t.is(results.length, rows.length, "one result per row");
  t.deepEqual(summary.errorKinds, {}, "no request failed");
  t.is(server.received.length, rows.length, "the server saw every row once");
  t.is(summary.ok, rows.length);
  results.sort((a, b) => a.index - b.index);
  const t0 = rows[0]!.tMs;
  let worst = 0;
  const lags: number[] = [];
  for (let i = 0; i < rows.length; i++) {
    const r = results[i]!;
    const row = rows[i]!;
    if (r.index !== i || r.requestedPromptTokens !== row.prompt || r.promptTokens !== row.prompt || r.requestedOutputTokens !== Math.max(1, row.output) || r.outputTokens !== Math.max(1, row.output)) {
      t.fail(`row ${i + 1}: asked ${r.requestedPromptTokens}/${r.requestedOutputTokens}, server saw ${r.promptTokens}/${r.outputTokens}, trace says ${row.prompt}/${row.output}`);
      return;
    }
    worst = Math.max(worst, Math.abs(r.scheduledMs - startAtMs - (row.tMs - t0) / speedup));
    lags.push(r.sentMs - r.scheduledMs);
  }
  t.true(worst < 1e-3, `scheduled times follow the trace offsets (worst error ${worst} ms)`);
  lags.sort((a, b) => a - b);
  t.true(lags[0]! >= 0, "nothing leaves before its time");
  // Loose bounds: the test machine is shared; the benchmark measures the real lag figures.
  t.true(lags[Math.floor(lags.length / 2)]! < 200, `median schedule lag ${lags[Math.floor(lags.length / 2)]} ms`);
  const traceSpanMs = (rows[rows.length - 1]!.tMs - t0) / speedup;
  const sentSpanMs = Math.max(...results.map((r) => r.sentMs)) - startAtMs;
  t.true(sentSpanMs >= traceSpanMs && sentSpanMs < traceSpanMs + 2000, `sends span ${sentSpanMs} ms for a trace span of ${traceSpanMs} ms`);
  const byId = new Set(server.received.map((r) => r.requestId));
  t.is(byId.size, rows.length, "request ids are unique");
  t.true(server.received.every((r) => r.stream && r.includeUsage && r.ignoreEos === true && r.minTokens === r.maxTokens && r.runId === "replay" && !!r.workloadClass));
}

for (const name of AZURE) {
  test.serial(`loadgen - every row of azure ${name} replays with its lengths and trace-time offsets`, async (t) => {
    const path = `${TRACES}/azure/${name}`;
    await replay(t, azureRows(path), (speedup) => azureTrace(path, { speedup }), 400);
  });
}

for (const name of MOONCAKE) {
  test.serial(`loadgen - every row of mooncake ${name} replays with its lengths and trace-time offsets`, async (t) => {
    const path = `${TRACES}/mooncake/${name}`;
    const rows = mooncakeRows(path);
    const spanS = (rows[rows.length - 1]!.tMs - rows[0]!.tMs) / 1000;
    await replay(t, rows, (speedup) => mooncakeTrace(path, { speedup }), Math.max(50, spanS / 14));
  });
}
