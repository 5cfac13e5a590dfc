import { readFileSync } from "node:fs";
import { z } from "zod";
import { ConfigError, errorMessage, onShutdownSignal, parseCarbonCsv } from "../../../shared/mod.ts";
import { defineCommand } from "../../../shared/command.ts";
import { packageFile } from "../../cli/package-root.ts";
import { runGovernorEval } from "./evaluate.ts";
import { formatEvalTable } from "./report.ts";
import type { ArmName } from "./arm.ts";

export const CONV_TRACE = "load/traces/azure/AzureLLMInferenceTrace_conv.csv";
export const CODE_TRACE = "load/traces/azure/AzureLLMInferenceTrace_code.csv";

const schema = z.object({
  out: z.string().default("out/governor-eval"),
  nodesPerPool: z.coerce.number().int().min(1).max(32).default(2),
  gpus: z.coerce.number().int().min(1).max(8).default(8),
  model: z.string().default("llama-2-70b"),
  // The carried traces, found from the package root wherever it runs from.
  convTrace: z.string().default(() => packageFile(CONV_TRACE) ?? CONV_TRACE),
  codeTrace: z.string().default(() => packageFile(CODE_TRACE) ?? CODE_TRACE),
  traceMinutes: z.coerce.number().positive().max(60).default(60),
  speedup: z.coerce.number().positive().max(3600).default(12),
  loadScale: z.coerce.number().positive().default(2),
  tailS: z.coerce.number().min(0).default(20),
  ttftSloMs: z.coerce.number().positive().default(2000),
  tpotSloMs: z.coerce.number().positive().default(100),
  attainment: z.coerce.number().gt(0).max(1).default(0.99),
  periodMs: z.coerce.number().int().min(200).default(5000),
  minSamples: z.coerce.number().int().min(1).default(10),
  floorMhz: z.coerce.number().positive().optional(),
  profile: z.string().optional(),
  arms: z.string().regex(/^(max|static|governor)(,(max|static|governor))*$/, "a comma list of max, static, governor").default("max,static,governor"),
  seed: z.coerce.number().int().default(1),
  carbon: z.string().optional(),
  runDir: z.string().optional(),
});

export const governEvalCommand = defineCommand(
  {
    name: "govern-eval",
    summary: "evaluate the governor on a simulated fleet: the same Azure 2023 replay at the maximum clock, at the lab's static choice, and governed; energy from InfluxDB",
    options: {
      out: { type: "string", arg: "DIR", description: "results.json and report.html (table and charts)", defaultText: "out/governor-eval" },
      "nodes-per-pool": { type: "string", arg: "N", description: "simulated nodes per pool (two pools: conversation, code)", defaultText: "2 (4 nodes)" },
      gpus: { type: "string", arg: "N", description: "GPUs per node, one instance of TP = N", defaultText: "8" },
      model: { type: "string", description: "simulated model", defaultText: "llama-2-70b" },
      "conv-trace": { type: "string", arg: "FILE", description: "conversation pool's Azure trace", defaultText: CONV_TRACE },
      "code-trace": { type: "string", arg: "FILE", description: "code pool's Azure trace", defaultText: CODE_TRACE },
      "trace-minutes": { type: "string", arg: "MIN", description: "trace minutes replayed (from its start)", defaultText: "60" },
      speedup: { type: "string", arg: "X", description: "time compression of the replay", defaultText: "12 (an hour in 5 min per arm)" },
      "load-scale": { type: "string", arg: "X", description: "request rate relative to the trace's own (rows kept: X / speedup)", defaultText: "2" },
      "tail-s": { type: "string", arg: "S", description: "seconds measured after the last arrival", defaultText: "20" },
      "ttft-slo-ms": { type: "string", arg: "MS", description: "SLO: time to first token", defaultText: "2000" },
      "tpot-slo-ms": { type: "string", arg: "MS", description: "SLO: time per output token", defaultText: "100" },
      attainment: { type: "string", arg: "SHARE", description: "the governor's attainment target", defaultText: "0.99" },
      "period-ms": { type: "string", arg: "MS", description: "the governor's control period (wall time)", defaultText: "5000" },
      "min-samples": { type: "string", arg: "N", description: "the governor's fewest requests per period to act", defaultText: "10" },
      "floor-mhz": { type: "string", arg: "MHZ", description: "lowest clock of the governor and of the static arm's search", defaultText: "the governor's default, 1005" },
      profile: { type: "string", arg: "FILE", description: "the lab's results.json (prior and static choice)", defaultText: "a library-mode sweep run here (seconds)" },
      arms: { type: "string", arg: "LIST", description: "arms to run", defaultText: "max,static,governor" },
      seed: { type: "string", description: "simulation and sampling seed", defaultText: "1" },
      carbon: { type: "string", arg: "CSV", description: "grid carbon intensity (time,gCO2/kWh), replayed with the trace: gCO2 per arm and saved" },
      "run-dir": { type: "string", arg: "DIR", description: "where NATS and InfluxDB keep their data", defaultText: "a temporary directory" },
    },
    schema,
    notes: ["Each arm runs trace-minutes × 60 / speedup + tail-s seconds of wall time on a fresh fleet; with the defaults about 5.5 min per arm, 17 min in all on 2 cores (one process: simnodes, agents, analyzer, load generator, governor)."],
    examples: ["joulestream govern-eval", "joulestream govern-eval --trace-minutes 10 --speedup 4 --out out/gov-small"],
  },
  async (cfg) => {
    const log = (l: string) => process.stderr.write(`govern-eval: ${l}\n`);
    let carbon;
    if (cfg.carbon) {
      try {
        carbon = parseCarbonCsv(readFileSync(cfg.carbon, "utf8"), "--carbon");
      } catch (err) {
        throw err instanceof ConfigError ? err : new ConfigError("--carbon", `cannot read ${cfg.carbon}: ${errorMessage(err)}`);
      }
    }
    const abort = new AbortController();
    const removeSignals = onShutdownSignal(async () => {
      abort.abort();
      await finished.catch(() => undefined);
    }, log);
    const finished = runGovernorEval({
      nodesPerPool: cfg.nodesPerPool, gpus: cfg.gpus, model: cfg.model, convTrace: cfg.convTrace, codeTrace: cfg.codeTrace, traceMinutes: cfg.traceMinutes, speedup: cfg.speedup, loadScale: cfg.loadScale, tailS: cfg.tailS,
      slo: { ttftSloMs: cfg.ttftSloMs, tpotSloMs: cfg.tpotSloMs, attainmentTarget: cfg.attainment }, periodMs: cfg.periodMs, minSamples: cfg.minSamples, ...(cfg.floorMhz !== undefined ? { floorMhz: cfg.floorMhz } : {}),
      ...(cfg.profile ? { profile: cfg.profile } : {}), arms: cfg.arms.split(",") as ArmName[], seed: cfg.seed, out: cfg.out, ...(carbon ? { carbon } : {}), ...(cfg.runDir ? { runDir: cfg.runDir } : {}), log, signal: abort.signal,
    });
    try {
      const r = await finished;
      if (!r) return 130;
      process.stdout.write(formatEvalTable(r.summary));
      log(`wrote ${r.files.join(", ")}`);
      return 0;
    } finally {
      removeSignals();
    }
  },
);
