import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connectNats, stopAll, type InfluxTarget } from "../../../shared/mod.ts";
import { startLocalStack } from "../../../infra/local-stack.ts";
import { createInfluxSink, detectInfluxApi, startAnalyzer } from "../../analyzer/mod.ts";
import { DEFAULT_POLICY, loadProfile, priorClock, type Profile } from "../../governor/mod.ts";
import { azureTrace, classify } from "../../loadgen/mod.ts";
import { H100_SUPPORTED_SM_CLOCKS_MHZ, modelSpec } from "../../simnode/mod.ts";
import { createLibraryRunner } from "../library-runner.ts";
import { parseMatrix } from "../matrix.ts";
import { runSweep } from "../sweep.ts";
import { runArm, type ArmName, type ArmResult, type ArmContext, type Pool } from "./arm.ts";
import { carbonOfArm, type CarbonSeries } from "./carbon.ts";
import { buildEvalHtml, summarizeArms, type EvalSummary } from "./report.ts";
import { chooseStaticByReplay, poolWorkloads, replayAt } from "./static-replay.ts";

/**
 * Lowest clock of both the static replay and the governor when no floor is given: the governor's
 * own default. With 795 MHz (the bottom of the lab's grid) for both, one run: static 0.6582 kWh at
 * −0.71 points, the governor 0.7816 kWh at −0.62 (it went to 795 on conversation nodes just before
 * their peak).
 */
const EVAL_FLOOR_MHZ = DEFAULT_POLICY.floorMhz;

/**
 * `joulestream govern-eval`: the governor's acceptance run on simulated nodes. One local stack
 * (nats-server, influxd), one analyzer; then, one after another on a fresh fleet each time, the
 * same replay of the Azure 2023 conversation and code traces (one pool of nodes each) run three
 * ways: every clock at the maximum, each pool locked at the cheapest clock that holds the SLO on a
 * replay of its trace (static-replay.ts), the governor. Energy is what the analyzer wrote to
 * InfluxDB; attainment is the load generator's.
 */
export interface EvalOptions {
  /** Nodes per pool (two pools: conversation, code). */
  nodesPerPool: number;
  gpus: number;
  model: string;
  convTrace: string;
  codeTrace: string;
  /** Trace window replayed (trace minutes from its start) and how much faster. */
  traceMinutes: number;
  speedup: number;
  /** Request rate relative to the trace's own (rows kept: loadScale / speedup). */
  loadScale: number;
  tailS: number;
  slo: { ttftSloMs: number; tpotSloMs: number; attainmentTarget: number };
  periodMs: number;
  minSamples: number;
  floorMhz?: number;
  /** The lab's results.json; default: a library-mode sweep of the model at TP = gpus, run here. */
  profile?: string;
  arms: ArmName[];
  seed: number;
  out: string;
  carbon?: CarbonSeries;
  runDir?: string;
  log?: (l: string) => void;
  signal?: AbortSignal;
  /** Called with the InfluxDB target before the stack stops (tests look at what landed). */
  inspect?: (influx: InfluxTarget, summary: EvalSummary, arms: readonly ArmResult[]) => Promise<void>;
}

export interface EvalResult {
  summary: EvalSummary;
  arms: ArmResult[];
  files: string[];
}

/** The lab's prior for the governor and the static arm: the paper grid's clocks, every class, at TP = gpus. */
export async function labProfile(o: Pick<EvalOptions, "profile" | "model" | "gpus" | "seed" | "out" | "signal">, log: (l: string) => void): Promise<Profile> {
  if (o.profile) return loadProfile(o.profile);
  const matrix = parseMatrix({
    name: "governor-eval-profile", seed: o.seed, window: { warmupS: 10, measureS: 60 }, slo: { factor: 5, reference: { tp: o.gpus, smClockMhz: 1980 }, attainment: 0.9 },
    axes: {
      model: [o.model], workload: ["short-short", "short-medium", "short-long", "medium-short", "medium-medium", "medium-long", "long-short", "long-medium", "long-long"],
      tp: [o.gpus], maxBatch: [256], smClockMhz: [795, 1005, 1200, 1395, 1605, 1800, 1980], load: [{ tokensPerS: 2000 }],
    },
  });
  log(`lab profile: library sweep of ${o.model} TP${o.gpus}, 9 classes × 7 clocks → ${join(o.out, "profile")}`);
  const r = await runSweep({ matrix, outDir: join(o.out, "profile"), runner: createLibraryRunner(), ...(o.signal ? { signal: o.signal } : {}) });
  const nul = (x: number) => (Number.isFinite(x) ? x : null);
  return { rows: r.rows.map((x) => ({ model: x.model, tp: x.tp, workloadClass: x.workloadClass, smClockMhz: x.smClockMhz, jPerOutputToken: nul(x.jPerOutputToken), ttftP90Ms: nul(x.ttftP90Ms), tpotP90Ms: nul(x.tpotP90Ms) })), skipped: 0 };
}

/** Class shares of the requests a pool will be sent (the same rows, caps and sampling as the replay). */
async function classMix(trace: string, o: EvalOptions, sample: number): Promise<Record<string, number>> {
  const maxContext = modelSpec(o.model).maxContext;
  const maxOutputTokens = Math.min(1024, Math.floor(maxContext / 4));
  const counts: Record<string, number> = {};
  let n = 0;
  for await (const r of azureTrace(trace, { speedup: o.speedup, windowMs: o.traceMinutes * 60_000, sample, seed: o.seed, maxPromptTokens: maxContext - maxOutputTokens, maxOutputTokens })) {
    const c = classify(r.promptTokens, r.outputTokens);
    counts[c] = (counts[c] ?? 0) + 1;
    n++;
  }
  return Object.fromEntries(Object.entries(counts).map(([c, k]) => [c, k / Math.max(1, n)]));
}

export async function runGovernorEval(o: EvalOptions): Promise<EvalResult | undefined> {
  const log = o.log ?? (() => {});
  const stops: (() => Promise<void>)[] = [];
  const sample = Math.min(1, o.loadScale / o.speedup);
  try {
    mkdirSync(o.out, { recursive: true });
    const profile = await labProfile(o, log);
    const slo = { ttftSloMs: o.slo.ttftSloMs, tpotSloMs: o.slo.tpotSloMs };
    const pools: Pool[] = [];
    for (const [name, trace] of [["conv", o.convTrace], ["code", o.codeTrace]] as const) {
      const mix = await classMix(trace, o, sample);
      const prior = priorClock(profile, o.model, o.gpus, mix, slo);
      const sweepMhz = prior?.mhz ?? Math.max(...H100_SUPPORTED_SM_CLOCKS_MHZ);
      log(`${name} pool: class mix ${Object.entries(mix).sort((a, b) => b[1] - a[1]).slice(0, 4).map(([c, s]) => `${c} ${(s * 100).toFixed(0)}%`).join(", ")}; the steady-load sweep's choice ${sweepMhz} MHz${prior ? "" : " (the profile has none meeting the SLO: maximum)"}`);
      // The static arm's clock: the pool's own trace replayed in library mode at every clock from the floor up.
      const per = await poolWorkloads({ trace, model: o.model, nodes: o.nodesPerPool, speedup: o.speedup, windowMs: o.traceMinutes * 60_000, sample, seed: o.seed });
      const sim = { model: o.model, gpus: o.gpus, speedup: o.speedup, windowMs: o.traceMinutes * 60_000, tailMs: o.tailS * 1000, slo };
      const replay = chooseStaticByReplay(per, { ...sim, minMhz: o.floorMhz ?? EVAL_FLOOR_MHZ });
      const atSweep = replayAt(per, sweepMhz, sim);
      log(`${name} pool: static clock ${replay.mhz} MHz (${replay.why}); the sweep's ${sweepMhz} MHz would keep ${(atSweep.attainment * 100).toFixed(2)}% within the SLO`);
      pools.push({ name, trace, staticMhz: replay.mhz, sweepMhz, replay: replay.rows, sweepReplay: atSweep });
    }
    if (o.signal?.aborted) return undefined;

    log("starting NATS (JetStream) and InfluxDB on 127.0.0.1 …");
    const stack = await startLocalStack({ ...(o.runDir ? { runDir: o.runDir } : {}), log });
    stops.push(() => stack.stop());
    const influx: InfluxTarget = { url: stack.influxUrl, database: stack.database };
    const api = await detectInfluxApi(stack.influxUrl);
    const ncAnalyzer = await connectNats({ nats: stack.natsUrl }, "joulestream-eval-analyzer");
    stops.push(() => ncAnalyzer.close());
    const analyzer = await startAnalyzer({ nc: ncAnalyzer, sink: createInfluxSink({ url: stack.influxUrl, database: stack.database, api: api.api, log }), influx, slo: { ttftMs: o.slo.ttftSloMs, tpotMs: o.slo.tpotSloMs }, log });
    stops.push(() => analyzer.stop());
    const nc = await connectNats({ nats: stack.natsUrl }, "joulestream-eval");
    stops.push(() => nc.close());

    const stamp = Date.now().toString(36).slice(-5);
    const ctx: ArmContext = {
      nc, influx, pools, nodesPerPool: o.nodesPerPool, gpus: o.gpus, model: o.model, seed: o.seed, windowMs: o.traceMinutes * 60_000, speedup: o.speedup, sample,
      tailMs: o.tailS * 1000, slo: o.slo, governor: { periodMs: o.periodMs, policy: { minSamples: o.minSamples, floorMhz: o.floorMhz ?? EVAL_FLOOR_MHZ }, profile }, stamp, log, ...(o.signal ? { signal: o.signal } : {}),
    };
    const arms: ArmResult[] = [];
    for (const [i, arm] of o.arms.entries()) {
      if (o.signal?.aborted) return undefined;
      log(`arm ${i + 1}/${o.arms.length}: ${arm} — ${o.nodesPerPool * 2} nodes × ${o.gpus} GPUs, ${o.traceMinutes} trace minutes at ${o.speedup}× (${((o.traceMinutes * 60) / o.speedup + o.tailS).toFixed(0)} s), ${(sample * 100).toFixed(1)}% of rows`);
      const r = await runArm(arm, ctx);
      if (o.carbon) r.energy = { ...r.energy, ...carbonOfArm(o.carbon, r.energy.timeline, r.t0Ms, o.speedup) };
      log(`arm ${arm}: ${(r.energy.energyJ / 3.6e6).toFixed(4)} kWh from InfluxDB (${r.energy.windows} node windows), attainment ${(r.attainment * 100).toFixed(1)}% of ${r.sent} requests`);
      if (arm === "max" && r.attainment < o.slo.attainmentTarget) {
        log(`note: at the maximum clock this load meets the SLO for ${(r.attainment * 100).toFixed(1)}% of requests, below the governor's target ${(o.slo.attainmentTarget * 100).toFixed(1)}%: the governor will hold the maximum (no clock meets the target); --attainment sets a reachable one`);
      }
      arms.push(r);
    }
    if (o.signal?.aborted) return undefined;
    const summary = summarizeArms(arms, { ...o, sample, pools });
    const files = [join(o.out, "results.json"), join(o.out, "report.html")];
    writeFileSync(files[0]!, JSON.stringify({ summary, arms }, null, 2) + "\n");
    writeFileSync(files[1]!, await buildEvalHtml(summary, arms));
    await o.inspect?.(influx, summary, arms);
    return { summary, arms, files };
  } finally {
    await stopAll(stops.reverse());
  }
}
