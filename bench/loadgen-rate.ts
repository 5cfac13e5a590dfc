/**
 * `npm run bench -- loadgen-rate [--duration S] [--max-rate R]`: the highest request rate one load
 * worker (one process) sustains with schedule lag p99 < 2 ms against a fast local endpoint, and the
 * same for two workers (two processes, one shared start time, shards by index). The endpoint is the
 * echo server in its own process, streaming 16 one-token chunks per request with usage; prompts
 * are 256 token ids. Each step sends constant-rate arrivals for --duration seconds.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { availableParallelism } from "node:os";
import { runLoad, syntheticWorkload, type WorkloadRequest } from "../services/loadgen/mod.ts";
import { createHistogram, histogramFromState, type HistogramState } from "../services/loadgen/mod.ts";
import { firstMatch, printedUrl } from "./helpers/child-output.ts";

const LAG_P99_LIMIT_MS = 2;
const PROMPT_TOKENS = 256;
const OUTPUT_TOKENS = 16;
const self = fileURLToPath(import.meta.url);

interface ChildReport {
  lag: HistogramState;
  sent: number;
  ok: number;
  lastSentMs: number;
  firstSentMs: number;
}

async function* constant(rate: number, durationS: number): AsyncGenerator<WorkloadRequest> {
  for await (const w of syntheticWorkload({ cls: "short-short", rate, durationS, arrival: "constant" })) yield { ...w, promptTokens: PROMPT_TOKENS, outputTokens: OUTPUT_TOKENS };
}

if (process.env.LOADGEN_BENCH_CHILD) {
  // Worker process: one shard of one step.
  const { url, rate, durationS, startAtMs, shard, count } = JSON.parse(process.env.LOADGEN_BENCH_CHILD) as { url: string; rate: number; durationS: number; startAtMs: number; shard: number; count: number };
  const lag = createHistogram(0.005);
  let first = Infinity, last = 0;
  const s = await runLoad({
    source: constant(rate, durationS),
    targets: [url],
    runId: "bench",
    shard: { index: shard, count },
    startAtMs,
    timeoutMs: 30_000,
    onResult: (r) => {
      lag.record(r.sentMs - r.scheduledMs);
      first = Math.min(first, r.sentMs);
      last = Math.max(last, r.sentMs);
    },
  });
  const report: ChildReport = { lag: lag.state(), sent: s.requests, ok: s.ok, firstSentMs: first, lastSentMs: last };
  process.stdout.write(JSON.stringify(report) + "\n");
  process.exit(0);
}

const { values } = parseArgs({ options: { duration: { type: "string", default: "3" }, "max-rate": { type: "string", default: "16000" } }, allowPositionals: true });
const durationS = Number(values.duration);
const maxRate = Number(values["max-rate"]);

function node(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ["--import=tsx", ...args], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } });
}

const firstLine = async (p: ChildProcess): Promise<string> => (await firstMatch(p.stdout!))[0];

const echo = node([fileURLToPath(new URL("../test/helpers/echo-main.ts", import.meta.url))], {});
const url = await printedUrl(echo.stdout!);

async function step(rate: number, workers: number) {
  const startAtMs = Date.now() + 1500; // time for the children to start and parse ahead
  const kids = Array.from({ length: workers }, (_, k) => node([self], { LOADGEN_BENCH_CHILD: JSON.stringify({ url, rate, durationS, startAtMs, shard: k, count: workers }) }));
  const reports = (await Promise.all(kids.map(firstLine))).map((l) => JSON.parse(l) as ChildReport);
  await Promise.all(kids.map((k) => (k.exitCode === null ? once(k, "exit") : undefined)));
  const lag = createHistogram(0.005);
  for (const r of reports) lag.merge(histogramFromState(r.lag));
  const sent = reports.reduce((a, r) => a + r.sent, 0);
  const ok = reports.reduce((a, r) => a + r.ok, 0);
  const spanS = (Math.max(...reports.map((r) => r.lastSentMs)) - Math.min(...reports.map((r) => r.firstSentMs))) / 1000;
  const s = lag.summary();
  return { rate, workers, sent, ok, achievedRate: spanS > 0 ? (sent - 1) / spanS : 0, lagP50Ms: s.p50, lagP99Ms: s.p99, lagMaxMs: s.max, pass: s.p99 < LAG_P99_LIMIT_MS && ok === sent && sent > 0 };
}

const ladder: number[] = [];
for (let r = 250; r <= maxRate; r = Math.round(r * 1.41)) ladder.push(r);
const rows: Awaited<ReturnType<typeof step>>[] = [];
const best: Record<number, number> = { 1: 0, 2: 0 };
process.stdout.write(`${availableParallelism()} CPUs; endpoint ${url}: ${PROMPT_TOKENS} prompt token ids, ${OUTPUT_TOKENS} one-token chunks per request; ${durationS} s per step; pass = lag p99 < ${LAG_P99_LIMIT_MS} ms and every request ok\n\n`);
process.stdout.write("workers  rate/s  achieved/s    sent      ok  lag p50 ms  lag p99 ms  lag max ms  pass\n");
for (const workers of [1, 2]) {
  let fails = 0;
  for (const rate of ladder) {
    const r = await step(rate, workers);
    rows.push(r);
    process.stdout.write(`${String(workers).padStart(7)}${String(rate).padStart(8)}${r.achievedRate.toFixed(0).padStart(12)}${String(r.sent).padStart(8)}${String(r.ok).padStart(8)}${r.lagP50Ms.toFixed(3).padStart(12)}${r.lagP99Ms.toFixed(3).padStart(12)}${r.lagMaxMs.toFixed(3).padStart(12)}  ${r.pass ? "yes" : "no"}\n`);
    if (r.pass) {
      best[workers] = Math.max(best[workers]!, rate);
      fails = 0;
    } else if (best[workers]! > 0 && ++fails >= 2) break; // two failures in a row after a pass: past the knee
  }
}
echo.kill("SIGTERM");
process.stdout.write(`\nhighest sustained rate with lag p99 < ${LAG_P99_LIMIT_MS} ms: 1 worker ${best[1]} req/s, 2 workers ${best[2]} req/s\n`);
process.stdout.write(JSON.stringify({ bench: "loadgen-rate", lagP99LimitMs: LAG_P99_LIMIT_MS, durationS, promptTokens: PROMPT_TOKENS, outputTokens: OUTPUT_TOKENS, cpus: availableParallelism(), maxRate1Worker: best[1], maxRate2Workers: best[2], steps: rows }) + "\n");
