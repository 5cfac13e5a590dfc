/**
 * How close the analyzer's per-request energy is to the truth: traces of different character run
 * through a simulated 8× H100 node (library mode, with its energy ledger), what an agent would
 * publish of it (10 Hz counter samples in 1-s windows, the tap's token timing: observed-node.ts),
 * the analyzer's windowed join; each stored request against the ledger.
 *
 *   npm run bench -- attribution-accuracy [--minutes 10] [--traces azure-conv,mooncake,...] [--rules window-0.1,...]
 *
 * Prints a table per rule and trace, and as its last line one JSON object with every figure.
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { burstWorkload, gpuSpec, kvCapacityTokens, modelSpec, poissonClassWorkload, simulate, type WorkloadRequest } from "../services/simnode/mod.ts";
import { CLASSES, traceRows, type TraceFormat } from "../services/loadgen/mod.ts";
import type { JoinOptions } from "../services/analyzer/mod.ts";
import type { RequestEnergy } from "../shared/mod.ts";
import { CALIBRATION_BURST, calibrateSimulated } from "../services/lab/mod.ts";
import { decodeStepCtxTokensOf, prefillCtxTokensOf } from "../shared/energy/mod.ts";
import { observe } from "./helpers/observed-node.ts";
import { accuracy, runJoin, type Accuracy } from "./helpers/accuracy.ts";

const { values: args } = parseArgs({ options: { minutes: { type: "string", default: "10" }, traces: { type: "string" }, rules: { type: "string" }, seed: { type: "string", default: "1" } } });
const minutes = Number(args.minutes);
const seed = Number(args.seed);

/** The node every trace runs on: 8× H100 SXM, Llama 3.1 70B (128k context: Mooncake's prompts fit) at TP4, two instances. */
export const NODE = { gpus: 8, tp: 4, model: "llama-3.1-70b" } as const;

const trace = (rel: string) => fileURLToPath(new URL(`../load/traces/${rel}`, import.meta.url));

async function fromTrace(path: string, format: TraceFormat, spanMs: number): Promise<WorkloadRequest[]> {
  const out: WorkloadRequest[] = [];
  let t0: number | undefined;
  for await (const row of traceRows(path, format)) {
    t0 ??= row.tMs;
    const arrivalMs = row.tMs - t0;
    if (arrivalMs >= spanMs) break;
    if (row.promptTokens >= 1 && row.outputTokens >= 1) out.push({ id: `${format}-${row.line}`, arrivalMs, promptTokens: Math.min(row.promptTokens, 120_000), outputTokens: Math.min(row.outputTokens, 4096) });
  }
  return out;
}

/** Bursts of mixed classes with idle gaps between them: a node that idles often, mid-window. */
function burstyMix(spanMs: number): WorkloadRequest[] {
  const out: WorkloadRequest[] = [];
  for (let k = 0, t = 0; t < spanMs; k++, t += 17_300) {
    const medians = [[400, 60], [1500, 400], [3000, 20], [200, 700]] as const;
    const [p, o] = medians[k % medians.length]!;
    for (const r of burstWorkload(12 + (k % 3) * 10, { promptMedian: p, outputMedian: o, seed: seed + k })) out.push({ ...r, id: `burst${k}-${r.id}`, arrivalMs: t + 150 * Number(r.id!.slice(1)) });
  }
  return out;
}

const TRACES: Record<string, () => Promise<WorkloadRequest[]>> = {
  "azure-conv": () => fromTrace(trace("azure/AzureLLMInferenceTrace_conv.csv"), "azure", minutes * 60_000),
  "azure-code": () => fromTrace(trace("azure/AzureLLMInferenceTrace_code.csv"), "azure", minutes * 60_000),
  mooncake: () => fromTrace(trace("mooncake/conversation_trace.jsonl"), "mooncake", minutes * 60_000),
  // The nine classes, each alone at 2 requests/s for a fifth of the span (at least a minute).
  ...Object.fromEntries(CLASSES.map((cls) => [`class-${cls}`, async () => poissonClassWorkload({ ratePerS: 2, durationS: Math.max(60, (minutes * 60) / 5), cls, seed })])),
  bursty: async () => burstyMix(minutes * 60_000),
};

/** What an operator can measure on a node before serving (`joulestream calibrate`): an idle span and a prompt-only burst on one instance. */
const CAL = calibrateSimulated({ model: NODE.model, tp: NODE.tp });

/** Attribution rules to compare: the join's options for each. */
const KV_TOKENS = kvCapacityTokens(modelSpec(NODE.model), gpuSpec("h100-sxm"), NODE.tp);
const CTX_K = decodeStepCtxTokensOf(modelSpec(NODE.model));
const PREFILL_CTX = { k: prefillCtxTokensOf(modelSpec(NODE.model)), calibrationPosition: (CALIBRATION_BURST.promptTokens - 1) / 2 };
const RULES: Record<string, { opts: JoinOptions; stored?: (r: RequestEnergy) => number; fit?: boolean; prefillTokensPerS?: number; kvCapacityTokens?: number; engineScrapeMs?: number; prefillPositionCost?: { k: number; calibrationPosition: number } }> = {
  // Today's rule: each 1-s window split by 0.1 × prefill + decode tokens; and the weight moved both ways.
  "window-0.1": { opts: { prefillWeight: 0.1 } },
  "window-0.03": { opts: { prefillWeight: 0.03 } },
  "window-0.3": { opts: { prefillWeight: 0.3 } },
  // Per trace: a least-squares fit of instance-window energy on prefill and decode tokens (and a
  // constant) over the trace's own windows, its prefill coefficient as the energy per prefill token.
  "prefill-fit": { opts: {}, fit: true },
  // The lab's calibration: a closed burst of prompt-only requests (1 output token) keeps the node
  // busy with prefill alone; counter energy over prompt tokens is the energy per prefill token.
  "prefill-lab": { opts: { prefillMjPerToken: CAL.prefillMjPerToken, staticPowerW: CAL.staticPowerW } },
  // The same, and the agent spreads each prompt's prefill over the windows before its first token
  // at the lab's prefill rate (work-tracker.ts, prefill-spread.ts).
  "prefill-lab-spread": { opts: { prefillMjPerToken: CAL.prefillMjPerToken, staticPowerW: CAL.staticPowerW }, prefillTokensPerS: CAL.prefillTokensPerS },
  // ... and holds a prompt back while the KV cache could not take it (prompt + max_tokens; the
  // engine's capacity, which vLLM logs at start).
  "prefill-lab-spread-kv": { opts: { prefillMjPerToken: CAL.prefillMjPerToken, staticPowerW: CAL.staticPowerW }, prefillTokensPerS: CAL.prefillTokensPerS, kvCapacityTokens: KV_TOKENS },
  "window-0.1-spread": { opts: { prefillWeight: 0.1 }, prefillTokensPerS: CAL.prefillTokensPerS },
  // ... and the agent scrapes the engine's running/waiting gauges (vLLM's /metrics) at 5 Hz: only
  // the prompts the engine admitted are estimated (engine-metrics.ts); the KV guess only when stale.
  "prefill-lab-spread-engine": { opts: { prefillMjPerToken: CAL.prefillMjPerToken, staticPowerW: CAL.staticPowerW }, prefillTokensPerS: CAL.prefillTokensPerS, kvCapacityTokens: KV_TOKENS, engineScrapeMs: 200 },
  // The same scraped once a second (a slower agent, or a busy server).
  // ... and the decode part of a window split by cost: each decode token's share of the step's fixed
  // cost (weights read once for the batch) plus its own KV read (∝ its context, which the agent
  // counts: WorkItem.decodeCtxTokens); the ratio from the model's config (decodeStepCtxTokensOf).
  "prefill-lab-spread-engine-ctx": { opts: { prefillMjPerToken: CAL.prefillMjPerToken, staticPowerW: CAL.staticPowerW, decodeStepCtxTokens: CTX_K }, prefillTokensPerS: CAL.prefillTokensPerS, kvCapacityTokens: KV_TOKENS, engineScrapeMs: 200 },
  // ... and a prefill token's cost grows with its position in the prompt (attention over the tokens
  // before it; the agent counts positions: WorkItem.prefillCtxTokens), relative to the calibration
  // burst's prompts (prefillCtxTokensOf, from the model's config).
  "prefill-lab-spread-engine-ctx-pos": { opts: { prefillMjPerToken: CAL.prefillMjPerToken, staticPowerW: CAL.staticPowerW, decodeStepCtxTokens: CTX_K, prefillCtx: PREFILL_CTX }, prefillTokensPerS: CAL.prefillTokensPerS, kvCapacityTokens: KV_TOKENS, engineScrapeMs: 200 },
  // ... and the agent's spread slows a prompt's prefill down as it goes on (a token's time ∝ Kp + x).
  "prefill-lab-spread-engine-ctx-pos-spread": { opts: { prefillMjPerToken: CAL.prefillMjPerToken, staticPowerW: CAL.staticPowerW, decodeStepCtxTokens: CTX_K, prefillCtx: PREFILL_CTX }, prefillTokensPerS: CAL.prefillTokensPerS, kvCapacityTokens: KV_TOKENS, engineScrapeMs: 200, prefillPositionCost: PREFILL_CTX },
  "prefill-lab-spread-engine-pos-spread": { opts: { prefillMjPerToken: CAL.prefillMjPerToken, staticPowerW: CAL.staticPowerW, prefillCtx: PREFILL_CTX }, prefillTokensPerS: CAL.prefillTokensPerS, kvCapacityTokens: KV_TOKENS, engineScrapeMs: 200, prefillPositionCost: PREFILL_CTX },
  "prefill-lab-spread-engine-pos": { opts: { prefillMjPerToken: CAL.prefillMjPerToken, staticPowerW: CAL.staticPowerW, prefillCtx: PREFILL_CTX }, prefillTokensPerS: CAL.prefillTokensPerS, kvCapacityTokens: KV_TOKENS, engineScrapeMs: 200 },
  "prefill-lab-spread-engine-1s": { opts: { prefillMjPerToken: CAL.prefillMjPerToken, staticPowerW: CAL.staticPowerW }, prefillTokensPerS: CAL.prefillTokensPerS, kvCapacityTokens: KV_TOKENS, engineScrapeMs: 1000 },
};

/** Ordinary least squares of y on the columns of x (normal equations, Gaussian elimination). */
function leastSquares(x: number[][], y: number[]): number[] {
  const k = x[0]!.length;
  const a = Array.from({ length: k }, () => new Array<number>(k + 1).fill(0));
  x.forEach((row, n) => {
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) a[i]![j]! += row[i]! * row[j]!;
      a[i]![k]! += row[i]! * y[n]!;
    }
  });
  for (let i = 0; i < k; i++) {
    const piv = a[i]![i]! || 1e-12;
    for (let r = 0; r < k; r++) {
      if (r === i) continue;
      const f = a[r]![i]! / piv;
      for (let c = i; c <= k; c++) a[r]![c]! -= f * a[i]![c]!;
    }
  }
  return a.map((row, i) => row[k]! / (row[i]! || 1e-12));
}

const traceNames = args.traces ? args.traces.split(",") : Object.keys(TRACES);
const ruleNames = args.rules ? args.rules.split(",") : Object.keys(RULES);
for (const n of traceNames) if (!TRACES[n]) throw new Error(`unknown trace ${n} (have ${Object.keys(TRACES).join(", ")})`);
for (const n of ruleNames) if (!RULES[n]) throw new Error(`unknown rule ${n} (have ${Object.keys(RULES).join(", ")})`);

const results: Record<string, Record<string, Accuracy & { simulatedS: number; wallMs: number; prefillMjPerToken?: number }>> = {};
const cols = ["trace", "requests", "median%", "p90%", "p99%", "bias%", "total%", "conserv", "static%", "active%", "wallMs"];
console.log(`node: ${NODE.gpus}× H100 SXM, ${NODE.model}, TP${NODE.tp}; 10 Hz counter samples, 1-s windows; span ${minutes} min\n`);
for (const rule of ruleNames) {
  console.log(`rule ${rule}`);
  console.log(cols.map((c, i) => (i === 0 ? c.padEnd(30) : c.padStart(i === 8 || i === 9 ? 13 : 10))).join(""));
  results[rule] = {};
  for (const name of traceNames) {
    const t0 = performance.now();
    const workload = await TRACES[name]!();
    const sim = simulate(workload, { ...NODE, ledger: true, recordTokenTimes: true, sampleIntervalMs: 100 });
    const { opts, stored, fit, prefillTokensPerS, kvCapacityTokens: kv, engineScrapeMs, prefillPositionCost } = RULES[rule]!;
    const obs = observe(sim, { node: "sim0", model: NODE.model, ...(prefillTokensPerS !== undefined ? { prefillTokensPerS } : {}), ...(kv !== undefined ? { kvCapacityTokens: kv } : {}), ...(engineScrapeMs !== undefined ? { engineScrapeMs } : {}), ...(prefillPositionCost ? { prefillPositionCost } : {}) });
    let fitted: number | undefined;
    if (fit) {
      const windows = runJoin(obs, opts).instanceWindows.filter((w) => w.prefillTokens + w.decodeTokens > 0);
      fitted = Math.max(0, leastSquares(windows.map((w) => [w.prefillTokens, w.decodeTokens, 1]), windows.map((w) => w.energyMj))[0]!);
    }
    const acc = { ...accuracy(runJoin(obs, fitted !== undefined ? { ...opts, prefillMjPerToken: fitted } : opts), sim.ledger!, stored), ...(opts.prefillMjPerToken !== undefined ? { prefillMjPerToken: +opts.prefillMjPerToken.toFixed(1) } : {}), ...(fitted !== undefined ? { prefillMjPerToken: +fitted.toFixed(1) } : {}) };
    const wallMs = Math.round(performance.now() - t0);
    results[rule]![name] = { ...acc, simulatedS: Math.round(sim.durationMs / 1000), wallMs };
    const row = [name + (acc.prefillMjPerToken !== undefined ? ` (${acc.prefillMjPerToken})` : ""), acc.matched, acc.medianPct, acc.p90Pct, acc.p99Pct, acc.biasPct, acc.totalPct, acc.conservation.toExponential(1), acc.staticPart ? `${acc.staticPart.medianPct}/${acc.staticPart.p90Pct}` : "-", acc.activePart ? `${acc.activePart.medianPct}/${acc.activePart.p90Pct}` : "-", wallMs];
    console.log(row.map((c, i) => (i === 0 ? String(c).padEnd(30) : String(c).padStart(i === 8 || i === 9 ? 13 : 10))).join(""));
  }
  console.log("");
}
console.log(JSON.stringify({ bench: "attribution-accuracy", node: NODE, minutes, seed, rules: results }));
