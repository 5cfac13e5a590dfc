import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { connectNats, onShutdownSignal, stopAll, systemClock } from "../../shared/mod.ts";
import { startLocalStack } from "../../infra/local-stack.ts";
import { createDcgmSource, startAgent, type CpuEnergyMeter } from "../agent/mod.ts";
import { createInfluxSink, detectInfluxApi, startAnalyzer } from "../analyzer/mod.ts";
import type { Summary } from "../../shared/mod.ts";
import { azureTrace, openResultsOutbox, poissonWorkload, runLoad, type LoadSummary } from "../loadgen/mod.ts";
import { instanceEndpoints, modelSpec, startSimnode } from "../simnode/mod.ts";
import { defineCommand } from "../../shared/command.ts";
import { packageFile } from "./package-root.ts";
import { formatSummary, readRunSummary, type RunSummary } from "./summary.ts";
import { subjects, type InfluxTarget, type LoadResult } from "../../shared/mod.ts";

/** The Azure 2023 conversation trace the repository carries (load/traces/README.md), package-relative. */
export const DEFAULT_TRACE = "load/traces/azure/AzureLLMInferenceTrace_conv.csv";

const schema = z.object({
  duration: z.coerce.number().positive().max(24 * 3600).default(60),
  trace: z.string().optional(),
  synthetic: z.boolean().default(false),
  rate: z.coerce.number().positive().default(4),
  workload: z.string().default("medium-medium"),
  speedup: z.coerce.number().positive().default(1),
  gpus: z.coerce.number().int().min(1).max(64).default(8),
  tp: z.coerce.number().int().min(1).max(8).default(4),
  model: z.string().default("llama-2-70b"),
  seed: z.coerce.number().int().default(1),
  out: z.string().optional(),
  runDir: z.string().optional(),
});

/** SLOs of the demo: 5× a lone request's latency on the simulated 70B TP=4 node (DynamoLLM's rule). */
const DEMO_SLO = { ttftMs: 2000, tpotMs: 100 };

export type DemoOptions = Omit<z.infer<typeof schema>, "synthetic"> & {
  synthetic?: boolean;
  log?: (line: string) => void;
  signal?: AbortSignal;
  /** Called with the InfluxDB target before the stack stops (tests look at what landed). */
  inspect?: (influx: InfluxTarget) => Promise<void>;
  /** The node's CPU energy meter for the agent (RAPL on a real node); none by default. */
  cpuEnergy?: CpuEnergyMeter;
};

export interface DemoResult {
  summary: RunSummary;
  /** The analyzer's query API answer for this run (per model and workload class, with SLO attainment). */
  byClass: Summary;
  load: LoadSummary;
  results: LoadResult[];
  influxUrl: string;
}

/**
 * The demo as a function (the CLI and the integration test share it): local stack, simulated node,
 * agent and analyzer in this process, load from a trace or synthetic; the summary is read back
 * from InfluxDB. Everything started is stopped before it returns, also on abort or error.
 */
export async function runDemo(cfg: DemoOptions): Promise<DemoResult | undefined> {
  const log = cfg.log ?? (() => {});
  const stops: (() => Promise<void>)[] = [];
  const abort = new AbortController();
  cfg.signal?.addEventListener("abort", () => abort.abort(), { once: true });
  try {
    log("starting NATS (JetStream) and InfluxDB on 127.0.0.1 …");
    const stack = await startLocalStack({ ...(cfg.runDir ? { runDir: cfg.runDir } : {}), log });
    stops.push(() => stack.stop());
    log(`NATS ${stack.natsUrl}, InfluxDB ${stack.influxUrl} (database ${stack.database})`);
    if (abort.signal.aborted) return undefined;

    const sim = await startSimnode({ gpus: cfg.gpus, tp: cfg.tp, model: cfg.model, seed: cfg.seed });
    stops.push(() => sim.stop());
    log(`simulated node: ${cfg.gpus}× H100, ${sim.instances.length} instance(s) of ${cfg.model} at TP=${cfg.tp}, ${sim.url}`);

    const clock = systemClock();
    const node = "demo-node";
    const ncAgent = await connectNats({ nats: stack.natsUrl }, "joulestream-demo-agent");
    stops.push(() => ncAgent.close());
    const agent = await startAgent({
      nc: ncAgent,
      node,
      clock,
      source: createDcgmSource({ url: sim.metricsUrl, clock, kind: "sim" }),
      instances: instanceEndpoints(sim),
      ...(cfg.cpuEnergy ? { cpuEnergy: cfg.cpuEnergy } : {}),
      log,
    });
    stops.push(() => agent.stop());

    const api = await detectInfluxApi(stack.influxUrl);
    const ncAnalyzer = await connectNats({ nats: stack.natsUrl }, "joulestream-demo-analyzer");
    stops.push(() => ncAnalyzer.close());
    const influx: InfluxTarget = { url: stack.influxUrl, database: stack.database };
    const analyzer = await startAnalyzer({
      nc: ncAnalyzer,
      sink: createInfluxSink({ url: stack.influxUrl, database: stack.database, api: api.api, log }),
      influx,
      slo: DEMO_SLO,
      // Its InfluxDB is new: raw data kept 7 days, 1-min rollups 400 days, as `joulestream up` sets it.
      ...(api.api === "v1" ? { rollups: {} } : {}),
      log,
    });
    stops.push(() => analyzer.stop());

    const runId = `demo-${new Date().toISOString().replace(/[-:T.Z]/g, "").slice(0, 17)}`;
    const trace = cfg.synthetic ? undefined : (cfg.trace ?? packageFile(DEFAULT_TRACE));
    // Only a bundle copied away from its checkout lacks the carried trace: said, not silently swapped.
    if (!cfg.synthetic && !trace) log(`${DEFAULT_TRACE} is not beside this build: synthetic load instead (--trace FILE to replay one)`);
    // The trace's longest prompts exceed a 4k-context model: capped as `load --max-prompt-tokens`
    // would, so the server refuses none (a refused request does no work and would read as 0 J).
    const maxContext = modelSpec(cfg.model).maxContext;
    const maxOutputTokens = Math.min(1024, Math.floor(maxContext / 4));
    const maxPromptTokens = maxContext - maxOutputTokens;
    const source = trace
      ? azureTrace(trace, { speedup: cfg.speedup, windowMs: cfg.duration * 1000 * cfg.speedup, maxPromptTokens, maxOutputTokens })
      : poissonWorkload({ rate: cfg.rate, durationS: cfg.duration, cls: cfg.workload, seed: cfg.seed });
    log(
      trace
        ? `replaying ${cfg.duration} s of ${trace}${cfg.speedup !== 1 ? ` at ${cfg.speedup}×` : ""} (prompts capped at ${maxPromptTokens} tokens and outputs at ${maxOutputTokens}: ${cfg.model}'s context is ${maxContext})`
        : `synthetic ${cfg.workload} load at ${cfg.rate} req/s for ${cfg.duration} s`,
    );
    const results: LoadResult[] = [];
    // Client-side results go to the LOAD stream too (through the load generator's own outbox, as
    // `joulestream load` sends them), where the analyzer joins them with energy.
    const outbox = openResultsOutbox(ncAgent);
    stops.push(async () => void (await outbox.close()));
    const load = await runLoad({
      source,
      targets: Object.values(agent.tapUrls),
      runId,
      model: cfg.model,
      signal: abort.signal,
      onResult: (r) => {
        results.push(r);
        outbox.publish(r);
      },
    });
    if (!(await outbox.drain(30_000))) log("warning: some load results did not reach LOAD within 30 s; their latencies will be missing from the summary");
    if (abort.signal.aborted) return undefined;

    log("load done; closing the last window and draining the analyzer …");
    await agent.stop();
    if (!(await analyzer.idle(60_000))) log("warning: the analyzer did not catch up within 60 s; the summary may be partial");
    const summary = await readRunSummary(influx, runId, node);
    // Through the analyzer's query API, as the lab and other tools would ask.
    const reply = await ncAnalyzer.request(`${subjects.query}.summary`, JSON.stringify({ runId }), { timeout: 10_000 });
    const byClass = JSON.parse(new TextDecoder().decode(reply.data)) as Summary;
    await cfg.inspect?.(influx);
    return { summary, byClass, load, results, influxUrl: stack.influxUrl };
  } finally {
    await stopAll(stops.reverse());
  }
}

export const demoCommand = defineCommand(
  {
    name: "demo",
    summary: "run the whole pipeline locally (NATS, InfluxDB, simulated 8×H100 node, agent, analyzer, load) and print energy per request",
    options: {
      duration: { type: "string", arg: "SECONDS", description: "how long to send load", defaultText: "60" },
      trace: { type: "string", arg: "FILE", description: "Azure-format trace to replay", defaultText: `${DEFAULT_TRACE} (carried in the repository)` },
      synthetic: { type: "boolean", description: "synthetic Poisson load instead of a trace" },
      rate: { type: "string", arg: "REQ/S", description: "synthetic: request rate", defaultText: "4" },
      workload: { type: "string", arg: "CLASS", description: "synthetic: workload class (short|medium|long)-(short|medium|long)", defaultText: "medium-medium" },
      speedup: { type: "string", arg: "X", description: "trace: replay X times faster", defaultText: "1" },
      gpus: { type: "string", arg: "N", description: "simulated GPUs", defaultText: "8" },
      tp: { type: "string", arg: "N", description: "tensor parallelism per instance", defaultText: "4" },
      model: { type: "string", description: "simulated model", defaultText: "llama-2-70b" },
      seed: { type: "string", description: "simulation seed", defaultText: "1" },
      out: { type: "string", arg: "DIR", description: "write DIR/summary.json and DIR/load.jsonl" },
      "run-dir": { type: "string", arg: "DIR", description: "where NATS and InfluxDB keep their data", defaultText: "a temporary directory" },
    },
    schema,
    examples: ["joulestream demo", "joulestream demo --duration 30 --out out/demo", "joulestream demo --synthetic --rate 8 --workload long-short"],
  },
  async (cfg) => {
    const log = (l: string) => process.stderr.write(`demo: ${l}\n`);
    const abort = new AbortController();
    let interrupted = false;
    const removeSignals = onShutdownSignal(async () => {
      interrupted = true;
      abort.abort();
      await finished;
    }, log);
    const finished = runDemo({ ...cfg, log, signal: abort.signal });
    try {
      const result = await finished;
      if (!result || interrupted) return 130;
      const ok = result.results.filter((r) => r.status === "ok").length;
      process.stdout.write(formatSummary(result.summary, { influxUrl: result.influxUrl, loadLine: `${result.results.length} sent, ${ok} ok`, byClass: result.byClass }));
      if (cfg.out) {
        mkdirSync(cfg.out, { recursive: true });
        const s = result.summary;
        const requests = s.requests.map((r) => ({ id: r.id, status: r.status, promptTokens: r.promptTokens, outputTokens: r.outputTokens, energyJ: r.energyJ, prefillJ: r.prefillJ, decodeJ: r.decodeJ, jPerOutputToken: r.jPerOutputToken, incomplete: r.incomplete }));
        writeFileSync(join(cfg.out, "summary.json"), JSON.stringify({ runId: s.runId, node: s.node, database: s.database, influxUrl: result.influxUrl, requests, totals: s.totals, perRequest: s.perRequest, byClass: result.byClass.groups, load: result.load }, null, 2) + "\n");
        writeFileSync(join(cfg.out, "load.jsonl"), result.results.map((r) => JSON.stringify(r)).join("\n") + "\n");
        log(`wrote ${join(cfg.out, "summary.json")}`);
      }
      return 0;
    } finally {
      removeSignals();
    }
  },
);
