import { readFileSync } from "node:fs";
import { z } from "zod";
import { parseCarbonCsv } from "../../shared/carbon.ts";
import { connectNats, natsConfig, natsOptions, replicasConfig, replicasOptions, runUntilSignal, withTimeout } from "../../shared/mod.ts";
import { defineCommand } from "../../shared/command.ts";
import { DEFAULT_STOP_GRACE_MS, startAnalyzer } from "./analyzer.ts";
import { DEFAULT_PREFILL_WEIGHT } from "../../shared/energy/mod.ts";
import { createInfluxSink } from "./influx-sink.ts";
import { detectInfluxApi } from "./influx-version.ts";

const schema = natsConfig.extend(replicasConfig.shape).extend({
  influxUrl: z.url().default("http://127.0.0.1:8086"),
  influxDb: z.string().min(1).default("joulestream"),
  influxApi: z.enum(["auto", "v1", "v2"]).default("auto"),
  influxToken: z.string().optional(),
  influxOrg: z.string().optional(),
  influxBucket: z.string().optional(),
  name: z.string().regex(/^[A-Za-z0-9_-]+$/).default("analyzer"),
  prefillWeight: z.coerce.number().min(0).max(100).default(DEFAULT_PREFILL_WEIGHT),
  prefillMjPerToken: z.coerce.number().positive().max(1e6).optional(),
  decodeStepCtxTokens: z.coerce.number().positive().max(1e9).optional(),
  prefillCtxTokens: z.coerce.number().positive().max(1e9).optional(),
  prefillCalibrationPromptTokens: z.coerce.number().int().positive().max(1e7).default(2048),
  staticPowerW: z.coerce.number().min(0).max(10_000).optional(),
  allowedLatenessMs: z.coerce.number().int().min(0).default(5000),
  partitions: z.coerce.number().int().min(0).max(1024).default(0),
  sloTtftMs: z.coerce.number().positive().optional(),
  sloTpotMs: z.coerce.number().positive().optional(),
  rawSamples: z.boolean().default(false),
  influxRollups: z.boolean().default(false),
  rawRetention: z.string().regex(/^\d+[hdw]$/, "an InfluxQL duration such as 7d").default("7d"),
  rollupRetention: z.string().regex(/^\d+[hdw]$/, "an InfluxQL duration such as 400d").default("400d"),
  stopGraceMs: z.coerce.number().int().min(0).default(DEFAULT_STOP_GRACE_MS),
  carbonCsv: z.string().optional(),
});

export const analyzerCommand = defineCommand(
  {
    name: "analyzer",
    summary: "join POWER, WORK and REQUESTS into energy per request; write InfluxDB and the ENERGY stream",
    options: {
      ...natsOptions,
      ...replicasOptions,
      "influx-url": { type: "string", arg: "URL", env: "JOULESTREAM_INFLUX_URL", description: "InfluxDB base URL", defaultText: "http://127.0.0.1:8086" },
      "influx-db": { type: "string", arg: "NAME", env: "JOULESTREAM_INFLUX_DB", description: "database (1.x) / bucket (2.x, 3.x)", defaultText: "joulestream" },
      "influx-api": { type: "string", arg: "auto|v1|v2", env: "JOULESTREAM_INFLUX_API", description: "write API: v2 = /api/v2/write (1.8+, 2.x, 3.x), v1 = /write (1.x before 1.8)", defaultText: "auto (from /ping)" },
      "influx-token": { type: "string", env: "JOULESTREAM_INFLUX_TOKEN", description: "InfluxDB 2.x/3.x token" },
      "influx-org": { type: "string", env: "JOULESTREAM_INFLUX_ORG", description: "InfluxDB 2.x organization" },
      "influx-bucket": { type: "string", env: "JOULESTREAM_INFLUX_BUCKET", description: "InfluxDB 2.x bucket (default: --influx-db)" },
      name: { type: "string", description: "durable consumer name prefix (replicas with the same name share the work)", defaultText: "analyzer" },
      "prefill-weight": { type: "string", arg: "W", description: "energy cost of a prefill token relative to a decode token (the token-weight rule, used unless --prefill-mj-per-token is given)", defaultText: String(DEFAULT_PREFILL_WEIGHT) },
      "prefill-mj-per-token": { type: "string", arg: "MJ", env: "JOULESTREAM_PREFILL_MJ_PER_TOKEN", description: "the prefill-energy rule: a prefill token costs this energy (mJ, all GPUs of an instance), decode tokens share the rest of the window; measure it with `joulestream calibrate` (docs/attribution.md)" },
      "decode-step-ctx-tokens": { type: "string", arg: "K", env: "JOULESTREAM_DECODE_STEP_CTX_TOKENS", description: "with --prefill-mj-per-token: split decode energy by cost, not count — a decode token's share of its step's fixed part plus its own KV read (its context, from agents that report it); K = weight bytes / KV bytes per token, from the model's config (Llama 3.1 70B BF16: 430908; docs/attribution.md)" },
      "prefill-ctx-tokens": { type: "string", arg: "KP", env: "JOULESTREAM_PREFILL_CTX_TOKENS", description: "with --prefill-mj-per-token: a prefill token's cost grows with its position x in the prompt, ∝ KP + x (attention over the tokens before it; positions from agents that report them); KP = active params / (2 × layers × d_model), from the model's config (Llama 3.1 70B: 53864)" },
      "prefill-calibration-prompt-tokens": { type: "string", arg: "N", description: "with --prefill-ctx-tokens: the prompt length of the burst --prefill-mj-per-token was measured with", defaultText: "2048 (joulestream calibrate's)" },
      "static-power-w": { type: "string", arg: "W", env: "JOULESTREAM_STATIC_POWER_W", description: "idle power of one GPU: each request's part of it is reported apart (static_j, active_j); measure it with `joulestream calibrate`" },
      partitions: { type: "string", arg: "N", env: "JOULESTREAM_PARTITIONS", description: "node partitions the NATS server maps subjects to (subject mappings: partitionMappings() in services/analyzer/partitions.ts); replicas with the same --name share them", defaultText: "0 (one replica does all)" },
      "slo-ttft-ms": { type: "string", arg: "MS", description: "TTFT target for SLO attainment (joined from load results)" },
      "slo-tpot-ms": { type: "string", arg: "MS", description: "TPOT target for SLO attainment" },
      "raw-samples": { type: "boolean", description: "store every 10 Hz GPU sample as its own gpu_power point (10× the points of the default, one aggregate per GPU and window in gpu_energy)" },
      "influx-rollups": { type: "boolean", env: "JOULESTREAM_INFLUX_ROLLUPS", description: "InfluxDB 1.x: create the retention policies (raw, the new default, and rollup_1m) and the continuous queries that fill 1-min rollups for long dashboard ranges (2.x/3.x: bucket retention and tasks instead)" },
      "raw-retention": { type: "string", arg: "DUR", description: "with --influx-rollups: how long raw data is kept", defaultText: "7d" },
      "rollup-retention": { type: "string", arg: "DUR", description: "with --influx-rollups: how long 1-min rollups are kept", defaultText: "400d" },
      "stop-grace-ms": { type: "string", arg: "MS", description: "on SIGTERM, how long to store and checkpoint what it holds; the rest is read again at the next start", defaultText: String(DEFAULT_STOP_GRACE_MS) },
      "carbon-csv": { type: "string", arg: "FILE", description: "grid carbon intensity (time,gCO2/kWh CSV, e.g. a CAISO export): gco2 on every request_energy point" },
      "allowed-lateness-ms": { type: "string", arg: "MS", description: "how long a window waits for late messages", defaultText: "5000" },
    },
    schema,
    examples: ["joulestream analyzer --nats nats://127.0.0.1:4222 --influx-url http://127.0.0.1:8086 --influx-db joulestream"],
  },
  async (cfg) => {
    const api = cfg.influxApi === "auto" ? (await detectInfluxApi(cfg.influxUrl)).api : cfg.influxApi;
    const sink = createInfluxSink({
      url: cfg.influxUrl,
      database: cfg.influxDb,
      api,
      ...(cfg.influxToken ? { token: cfg.influxToken } : {}),
      ...(cfg.influxOrg ? { org: cfg.influxOrg } : {}),
      ...(cfg.influxBucket ? { bucket: cfg.influxBucket } : {}),
      log: (l) => process.stderr.write(`analyzer: ${l}\n`),
    });
    if (cfg.influxRollups && api !== "v1") process.stderr.write(`analyzer: --influx-rollups: InfluxDB 2.x/3.x keep retention per bucket and roll up with tasks; nothing created (see infra/influxdb/README.md)\n`);
    const nc = await connectNats(cfg, `joulestream-${cfg.name}`);
    const analyzer = await startAnalyzer({
      nc,
      sink,
      name: cfg.name,
      prefillWeight: cfg.prefillWeight,
      ...(cfg.prefillMjPerToken !== undefined ? { prefillMjPerToken: cfg.prefillMjPerToken } : {}),
      ...(cfg.decodeStepCtxTokens !== undefined ? { decodeStepCtxTokens: cfg.decodeStepCtxTokens } : {}),
      ...(cfg.prefillCtxTokens !== undefined ? { prefillCtx: { k: cfg.prefillCtxTokens, calibrationPosition: (cfg.prefillCalibrationPromptTokens - 1) / 2 } } : {}),
      ...(cfg.staticPowerW !== undefined ? { staticPowerW: cfg.staticPowerW } : {}),
      allowedLatenessMs: cfg.allowedLatenessMs,
      partitions: cfg.partitions,
      replicas: cfg.replicas,
      rawSamples: cfg.rawSamples,
      stopGraceMs: cfg.stopGraceMs,
      ...(cfg.carbonCsv ? { carbon: parseCarbonCsv(readFileSync(cfg.carbonCsv, "utf8"), "--carbon-csv") } : {}),
      ...(cfg.influxRollups ? (api === "v1" ? { rollups: { rawDuration: cfg.rawRetention, rollupDuration: cfg.rollupRetention } } : {}) : {}),
      slo: { ...(cfg.sloTtftMs ? { ttftMs: cfg.sloTtftMs } : {}), ...(cfg.sloTpotMs ? { tpotMs: cfg.sloTpotMs } : {}) },
      influx: { url: cfg.influxUrl, database: cfg.influxDb, ...(cfg.influxToken ? { token: cfg.influxToken } : {}) },
      log: (l) => process.stderr.write(`analyzer: ${l}\n`),
    });
    // Before announcing itself. The connection's drain gets 5 s: a server that went away must not hold
    // the process once the analyzer has stored and checkpointed what it could.
    const stopped = runUntilSignal(
      () => analyzer.stop(),
      () => withTimeout(nc.drain(), 5000, "draining the NATS connection").catch(() => nc.close()),
    );
    process.stderr.write(`analyzer ${cfg.name}: consuming from ${cfg.nats}, writing ${cfg.influxUrl} db=${cfg.influxDb} (${api} write API)\n`);
    await stopped;
    return 0;
  },
);
