import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { ConfigError } from "../../shared/errors.ts";
import { onShutdownSignal } from "../../shared/lifecycle.ts";
import { natsOptions } from "../../shared/config.ts";
import { connectNats } from "../../shared/nats.ts";
import { defineCommand } from "../../shared/command.ts";
import { decodeStepCtxTokensOf, prefillCtxTokensOf } from "../../shared/energy/mod.ts";
import { modelSpec } from "../simnode/mod.ts";
import { CALIBRATION_BURST, calibrateSimulated } from "./calibrate.ts";
import { createFleetController, createSimnodeController, parseEndpoint, type KnobController } from "./controllers.ts";
import { createLibraryRunner, type PointRunner } from "./library-runner.ts";
import { loadMatrix } from "./matrix.ts";
import { formatRecommendations } from "./recommend.ts";
import { createRealtimeRunner } from "./realtime-runner.ts";
import { buildReportHtml, readSweepDir } from "./report/html.ts";
import { runSweep } from "./sweep.ts";

/**
 * `joulestream sweep` and `joulestream report`. The lead wires them into services/cli/main.ts:
 *   sweep:  { summary: "…", load: async () => (await import("../lab/command.ts")).sweepCommand as CliCommand },
 *   report: { summary: "…", load: async () => (await import("../lab/command.ts")).reportCommand as CliCommand },
 */
const sweepSchema = z.object({
  matrix: z.string({ error: "is required" }).min(1),
  out: z.string({ error: "is required" }).min(1),
  mode: z.enum(["library", "simnode", "fleet"]).default("library"),
  only: z.array(z.string()).optional(),
  simnode: z.string().url().optional(),
  target: z.array(z.string().url()).optional(),
  node: z.string().optional(),
  endpoint: z.array(z.string()).optional(),
  influxUrl: z.string().url().default("http://127.0.0.1:8086"),
  influxDb: z.string().default("joulestream"),
  influxToken: z.string().optional(),
  nats: z.string().default("nats://127.0.0.1:4222"),
  creds: z.string().optional(),
  user: z.string().optional(),
  password: z.string().optional(),
  token: z.string().optional(),
});

export const sweepCommand = defineCommand(
  {
    name: "sweep",
    summary: "run an experiment matrix (GPU clock × batch × TP × workload class) and write a tidy table with recommendations",
    options: {
      matrix: { type: "string", arg: "FILE", description: "experiment matrix, YAML or JSON (see load/matrices/)" },
      out: { type: "string", arg: "DIR", description: "output directory: points.jsonl (resumable), results.csv, results.json" },
      mode: { type: "string", arg: "MODE", description: "library (simulated node as a function, no real time) | simnode (a running simnode via /admin/config) | fleet (real node: clock through the agent's clock control)", defaultText: "library" },
      only: { type: "string", multiple: true, arg: "EXPERIMENT", description: "run only this experiment of the matrix" },
      simnode: { type: "string", arg: "URL", description: "simnode mode: the simnode's base URL (its /admin/config)" },
      target: { type: "string", multiple: true, arg: "URL", description: "simnode mode: where load goes (the agent's tap in front of the simnode)" },
      node: { type: "string", env: "JOULESTREAM_NODE_ID", description: "simnode/fleet mode: the node id the agent publishes as" },
      endpoint: { type: "string", multiple: true, arg: "SPEC", description: "fleet mode: tp=4,batch=256,gpus=0-3,url=http://node:9001 (an agent tap serving that configuration)" },
      "influx-url": { type: "string", arg: "URL", env: "JOULESTREAM_INFLUX_URL", description: "InfluxDB the analyzer writes to", defaultText: "http://127.0.0.1:8086" },
      "influx-db": { type: "string", env: "JOULESTREAM_INFLUX_DB", description: "InfluxDB database", defaultText: "joulestream" },
      "influx-token": { type: "string", env: "JOULESTREAM_INFLUX_TOKEN", description: "InfluxDB 2.x/3.x token" },
      ...natsOptions,
    },
    schema: sweepSchema,
    examples: [
      "joulestream sweep --matrix load/matrices/paper.yaml --out out/paper",
      "joulestream sim --gpus 4 --tp 4 --model llama-2-70b --port 8100 &   # the simnode must have exactly the point's GPUs (smoke: TP4)",
      "joulestream sweep --matrix load/matrices/smoke.yaml --out out/smoke-rt --mode simnode --simnode http://127.0.0.1:8100 --target http://127.0.0.1:9000 --node sim-1",
      "joulestream sweep --matrix my.yaml --out out/h100 --mode fleet --node gpu-07 --endpoint tp=4,batch=256,gpus=0-3,url=http://gpu-07:9001",
    ],
  },
  async (cfg) => {
    const log = (l: string) => process.stderr.write(`sweep: ${l}\n`);
    const matrix = loadMatrix(cfg.matrix);
    const closers: (() => Promise<void>)[] = [];
    let runner: PointRunner;
    if (cfg.mode === "library") runner = createLibraryRunner();
    else {
      if (!cfg.node) throw new ConfigError("--node", `is required in ${cfg.mode} mode`);
      let controller: KnobController;
      if (cfg.mode === "simnode") {
        if (!cfg.simnode) throw new ConfigError("--simnode", "is required in simnode mode");
        if (!cfg.target?.length) throw new ConfigError("--target", "is required in simnode mode (the agent's tap URL)");
        controller = createSimnodeController({ adminUrl: cfg.simnode, targets: cfg.target });
      } else {
        if (!cfg.endpoint?.length) throw new ConfigError("--endpoint", "at least one labelled endpoint is required in fleet mode");
        const nc = await connectNats(cfg, "joulestream-sweep");
        closers.push(() => nc.close());
        controller = createFleetController({ nc, node: cfg.node, endpoints: cfg.endpoint.map(parseEndpoint) });
      }
      runner = createRealtimeRunner({ controller, node: cfg.node, influx: { url: cfg.influxUrl, database: cfg.influxDb, ...(cfg.influxToken ? { token: cfg.influxToken } : {}) }, log });
    }
    const abort = new AbortController();
    // Ctrl-C: stop after the point in flight is abandoned; runSweep restores the knobs in `finally`.
    const removeSignals = onShutdownSignal(async () => {
      abort.abort();
      await finished.catch(() => {});
    }, log);
    const finished = runSweep({ matrix, outDir: cfg.out, runner, ...(cfg.only ? { only: cfg.only } : {}), signal: abort.signal, log });
    try {
      const r = await finished;
      process.stdout.write(formatRecommendations(r.recommendations));
      log(`${r.measured} measured, ${r.skipped} already in ${cfg.out}, ${r.failed.length} failed, ${(r.wallMs / 1000).toFixed(1)} s; wrote ${cfg.out}/results.csv and results.json`);
      return r.interrupted ? 130 : r.failed.length > 0 ? 1 : 0;
    } finally {
      removeSignals();
      for (const c of closers) await c();
    }
  },
);

const reportSchema = z.object({
  in: z.string({ error: "is required" }).min(1),
  out: z.string().optional(),
});

export const reportCommand = defineCommand(
  {
    name: "report",
    summary: "render a sweep directory as one self-contained HTML report with SVG charts",
    options: {
      in: { type: "string", arg: "DIR", description: "a sweep's output directory" },
      out: { type: "string", arg: "FILE", description: "the HTML file to write", defaultText: "DIR/report.html" },
    },
    schema: reportSchema,
    examples: ["joulestream report --in out/paper --out out/paper/report.html"],
  },
  async (cfg) => {
    const out = cfg.out ?? `${cfg.in}/report.html`;
    const html = await buildReportHtml(readSweepDir(cfg.in));
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, html);
    process.stderr.write(`report: wrote ${out} (${(html.length / 1024).toFixed(0)} KiB)\n`);
    return 0;
  },
);

const calibrateSchema = z.object({
  model: z.string().min(1).default("llama-3.1-70b"),
  gpu: z.string().min(1).default("h100-sxm"),
  tp: z.coerce.number().int().min(1).max(64).default(4),
  smClockMhz: z.coerce.number().int().positive().optional(),
  maxBatch: z.coerce.number().int().positive().optional(),
});

export const calibrateCommand = defineCommand(
  {
    name: "calibrate",
    summary: "measure what energy attribution needs for a deployment: static power per GPU, energy and rate of a prefill token",
    options: {
      model: { type: "string", description: "model", defaultText: "llama-3.1-70b" },
      gpu: { type: "string", description: "GPU model", defaultText: "h100-sxm" },
      tp: { type: "string", arg: "N", description: "GPUs per instance (tensor parallelism)", defaultText: "4" },
      "sm-clock-mhz": { type: "string", arg: "MHZ", description: "SM clock the instance runs at (prefill energy moves with it)", defaultText: "the GPU's maximum" },
      "max-batch": { type: "string", arg: "N", description: "the engine's max running sequences" },
    },
    schema: calibrateSchema,
    examples: ["joulestream calibrate --model llama-3.1-70b --gpu h100-sxm --tp 4"],
  },
  async (cfg) => {
    // The simulated node (library mode) today; on a real node the same two measurements (an idle
    // span, a prompt-only burst) come from its counters (calibrationFrom; docs/attribution.md).
    const c = calibrateSimulated({ model: cfg.model, gpuModel: cfg.gpu, tp: cfg.tp, ...(cfg.smClockMhz ? { smClockMhz: cfg.smClockMhz } : {}), ...(cfg.maxBatch ? { maxBatch: cfg.maxBatch } : {}) });
    const { burst, idle } = c.measurements;
    process.stderr.write(
      `calibrate: simulated ${cfg.model} on ${cfg.tp}× ${cfg.gpu}: idle ${(idle.durationMs / 1000).toFixed(1)} s; burst of ${burst.promptTokens} prompt tokens (1 output token each) in ${(burst.durationMs / 1000).toFixed(2)} s, ${(burst.energyMj / 1000).toFixed(0)} J\n`,
    );
    // The costs that grow with context are ratios from the model's config, not measured (docs/attribution.md).
    const spec = modelSpec(cfg.model);
    const ctx = `--decode-step-ctx-tokens ${Math.round(decodeStepCtxTokensOf(spec))} --prefill-ctx-tokens ${Math.round(prefillCtxTokensOf(spec))} --prefill-calibration-prompt-tokens ${CALIBRATION_BURST.promptTokens}`;
    process.stdout.write(`analyzer: --prefill-mj-per-token ${c.prefillMjPerToken.toFixed(1)} --static-power-w ${c.staticPowerW.toFixed(1)} ${ctx}\n`);
    process.stdout.write(`agent:    --prefill-tokens-per-s ${Math.round(c.prefillTokensPerS)} --prefill-ctx-tokens ${Math.round(prefillCtxTokensOf(spec))} --prefill-calibration-prompt-tokens ${CALIBRATION_BURST.promptTokens}\n`);
    process.stdout.write(`${JSON.stringify({ model: cfg.model, gpu: cfg.gpu, tp: cfg.tp, ...(cfg.smClockMhz ? { smClockMhz: cfg.smClockMhz } : {}), staticPowerW: c.staticPowerW, prefillMjPerToken: c.prefillMjPerToken, prefillTokensPerS: c.prefillTokensPerS })}\n`);
    return 0;
  },
);
