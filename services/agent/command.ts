import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { connectNats, natsConfig, natsOptions, nodeInboxPrefix, replicasConfig, replicasOptions, runUntilSignal, systemClock, ConfigError } from "../../shared/mod.ts";
import { defineCommand } from "../../shared/command.ts";
import { startAgent } from "./agent.ts";
import { parseInstance } from "./instances.ts";
import { DEFAULT_ENGINE_METRICS_INTERVAL_MS } from "./engine-metrics.ts";
import { openPowerSource } from "./open-source.ts";
import { DEFAULT_POWERCAP_ROOT, createRaplReader, raplMeter } from "./rapl.ts";
import type { CpuEnergyMeter } from "./sampler.ts";
import { errorMessage } from "../../shared/errors.ts";

const schema = natsConfig.extend(replicasConfig.shape).extend({
  nodeId: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "must be letters, digits, '-' or '_' (one NATS subject token)").default(hostname().replace(/[^A-Za-z0-9_-]/g, "-")),
  source: z.enum(["auto", "nvml", "dcgm", "sim"]).default("auto"),
  dcgmUrl: z.url().default("http://127.0.0.1:9400/metrics"),
  nvmlLibrary: z.string().optional(),
  nvmlCalls: z.enum(["auto", "sync", "async"]).default("auto"),
  nvmlExtrasIntervalMs: z.coerce.number().int().min(0).max(60_000).default(1000),
  instance: z.array(z.string()).default([]),
  upstream: z.url().optional(),
  listen: z.string().default("127.0.0.1:9000"),
  gpus: z.string().optional(),
  model: z.string().optional(),
  sampleIntervalMs: z.coerce.number().int().min(10).max(10_000).default(100),
  publishIntervalMs: z.coerce.number().int().min(100).max(60_000).default(1000),
  noContinuousUsage: z.boolean().default(false),
  prefillTokensPerS: z.coerce.number().positive().max(1e9).optional(),
  kvCapacityTokens: z.coerce.number().int().positive().optional(),
  prefillCtxTokens: z.coerce.number().positive().max(1e9).optional(),
  prefillCalibrationPromptTokens: z.coerce.number().int().positive().max(1e7).default(2048),
  engineMetrics: z.enum(["auto", "on", "off"]).default("auto"),
  engineMetricsIntervalMs: z.coerce.number().int().min(50).max(10_000).default(DEFAULT_ENGINE_METRICS_INTERVAL_MS),
  spoolDir: z.string().optional(),
  allowClockControl: z.boolean().default(false),
  simAdmin: z.url().optional(),
  rapl: z.enum(["auto", "on", "off"]).default("auto"),
  powercapRoot: z.string().default(DEFAULT_POWERCAP_ROOT),
});

export const agentCommand = defineCommand(
  {
    name: "agent",
    summary: "node agent: GPU power sampling + OpenAI request tap, publishing POWER/REQUESTS/WORK to JetStream",
    options: {
      ...natsOptions,
      ...replicasOptions,
      "node-id": { type: "string", arg: "ID", env: "JOULESTREAM_NODE_ID", description: "this node's id (one subject token)", defaultText: "hostname" },
      source: { type: "string", arg: "auto|nvml|dcgm|sim", env: "JOULESTREAM_POWER_SOURCE", description: "where GPU power comes from; auto: NVML if the library loads, else the DCGM exporter at --dcgm-url if it answers", defaultText: "auto" },
      "dcgm-url": { type: "string", arg: "URL", env: "JOULESTREAM_DCGM_URL", description: "DCGM exporter (or simnode) /metrics URL", defaultText: "http://127.0.0.1:9400/metrics" },
      "nvml-library": { type: "string", arg: "PATH", env: "JOULESTREAM_NVML_LIBRARY", description: "libnvidia-ml.so.1 to load", defaultText: "libnvidia-ml.so.1" },
      "nvml-calls": { type: "string", arg: "auto|sync|async", description: "NVML calls on the event loop (sync, µs each) or on koffi's threads (async, ~40 µs CPU each); auto moves to async if a driver is slow", defaultText: "auto" },
      "nvml-extras-interval-ms": { type: "string", arg: "MS", description: "read SM/memory clocks, utilization and temperature this often (power and energy: every sample); 0: every sample", defaultText: "1000" },
      instance: { type: "string", multiple: true, arg: "SPEC", env: "JOULESTREAM_INSTANCES", description: "id=i0,listen=127.0.0.1:9000,upstream=http://127.0.0.1:8000,gpus=0-3[,model=M]" },
      upstream: { type: "string", arg: "URL", env: "JOULESTREAM_UPSTREAM", description: "single instance shorthand: the inference server URL (with neither this nor --instance, the agent publishes power only)" },
      listen: { type: "string", arg: "HOST:PORT", env: "JOULESTREAM_LISTEN", description: "single instance shorthand: where the tap listens", defaultText: "127.0.0.1:9000" },
      gpus: { type: "string", arg: "LIST", description: "single instance shorthand: its GPUs (e.g. 0-7)", defaultText: "all" },
      model: { type: "string", description: "single instance shorthand: model label" },
      "sample-interval-ms": { type: "string", arg: "MS", description: "power sampling period", defaultText: "100 (10 Hz)" },
      "publish-interval-ms": { type: "string", arg: "MS", description: "POWER/WORK window length", defaultText: "1000" },
      "spool-dir": { type: "string", arg: "DIR", env: "JOULESTREAM_SPOOL_DIR", description: "where samples and events wait on disk while NATS is unreachable", defaultText: "$TMPDIR/joulestream-spool-<node-id>" },
      "allow-clock-control": { type: "boolean", description: "serve ctl.v1.<node> to lock SM clocks / set power limits (needs root with NVML; always restored on exit)" },
      "sim-admin": { type: "string", arg: "URL", description: "with --source sim: the simnode's base URL for clock control", defaultText: "the origin of --dcgm-url" },
      rapl: { type: "string", arg: "auto|on|off", env: "JOULESTREAM_RAPL", description: "CPU package energy (RAPL, root only since Linux 5.10) in each POWER window; auto: when readable", defaultText: "auto" },
      "powercap-root": { type: "string", arg: "DIR", description: "where the powercap zones are (a host /sys mounted elsewhere)", defaultText: DEFAULT_POWERCAP_ROOT },
      "prefill-tokens-per-s": { type: "string", arg: "N", env: "JOULESTREAM_PREFILL_TOKENS_PER_S", description: "an instance's prefill rate (`joulestream calibrate`): WORK then spreads a prompt's prefill over the windows before its first token, not all into that one" },
      "kv-capacity-tokens": { type: "string", arg: "N", env: "JOULESTREAM_KV_CAPACITY_TOKENS", description: "with --prefill-tokens-per-s: an instance's KV cache in tokens (vLLM logs it at start); a prompt is not counted as prefilling while it could not fit" },
      "prefill-ctx-tokens": { type: "string", arg: "KP", env: "JOULESTREAM_PREFILL_CTX_TOKENS", description: "with --prefill-tokens-per-s: a prompt token's prefill time grows with its position x, ∝ KP + x (attention over the tokens before it): the analyzer's --prefill-ctx-tokens, from the model's config (`joulestream calibrate` prints it)" },
      "prefill-calibration-prompt-tokens": { type: "string", arg: "N", description: "with --prefill-ctx-tokens: the prompt length of the burst --prefill-tokens-per-s was measured with", defaultText: "2048 (joulestream calibrate's)" },
      "engine-metrics": { type: "string", arg: "auto|on|off", env: "JOULESTREAM_ENGINE_METRICS", description: "with --prefill-tokens-per-s: scrape each instance's <upstream>/metrics for vLLM's num_requests_running/waiting, so that only prompts the engine admitted count as prefilling; auto: where the server has them", defaultText: "auto" },
      "engine-metrics-interval-ms": { type: "string", arg: "MS", description: "how often to scrape them", defaultText: String(DEFAULT_ENGINE_METRICS_INTERVAL_MS) },
      "no-continuous-usage": { type: "boolean", description: "do not ask servers for per-chunk usage (for servers that reject stream_options.continuous_usage_stats)" },
    },
    schema,
    examples: [
      "joulestream agent --nats nats://10.0.0.5:4222 --creds /etc/joulestream/node.creds --node-id gpu-017 --source nvml --upstream http://127.0.0.1:8000 --listen 0.0.0.0:9000",
      "joulestream agent --source dcgm --dcgm-url http://127.0.0.1:9400/metrics --instance id=tp4a,listen=:9001,upstream=http://127.0.0.1:8001,gpus=0-3 --instance id=tp4b,listen=:9002,upstream=http://127.0.0.1:8002,gpus=4-7",
    ],
  },
  async (cfg) => {
    const clock = systemClock();
    // Instance specs first: a typo in one is said before any GPU or exporter is touched.
    const instances = cfg.instance.map((s) => parseInstance(s));
    const powerOnly = instances.length === 0 && !cfg.upstream;
    if (powerOnly && (cfg.gpus || cfg.model)) throw new ConfigError(cfg.gpus ? "--gpus" : "--model", "describes the instance --upstream names, and there is no --upstream (without one the agent publishes power only)");
    const say = (line: string) => process.stderr.write(`agent ${cfg.nodeId}: ${line}\n`);
    const { source, clockBackend } = await openPowerSource({
      source: cfg.source,
      dcgmUrl: cfg.dcgmUrl,
      ...(cfg.nvmlLibrary ? { nvmlLibrary: cfg.nvmlLibrary } : {}),
      nvmlCalls: cfg.nvmlCalls,
      nvmlExtrasIntervalMs: cfg.nvmlExtrasIntervalMs,
      allowClockControl: cfg.allowClockControl,
      ...(cfg.simAdmin ? { simAdmin: cfg.simAdmin } : {}),
      clock,
      say,
    });
    const described = await source.describe();
    if (described.gpus.length === 0 && !described.unreadableGpus?.length) {
      process.stderr.write(`agent ${cfg.nodeId}: WARNING: ${source.kind} reports no GPUs; POWER windows will be empty (the request tap still works). Is this a GPU node, and is the driver loaded?\n`);
    }
    if (powerOnly) {
      // A node without an OpenAI server of its own (training, a server behind another proxy): power only.
      say("no --upstream or --instance: power only, no request tap");
    } else if (instances.length === 0) {
      // By default the instance owns every GPU the source reads (not 0..n-1: one may have no handle).
      const gpus = cfg.gpus ?? (described.gpus.length ? described.gpus.map((g) => g.index).join(",") : "0");
      instances.push(parseInstance(`id=i0,listen=${cfg.listen},upstream=${cfg.upstream},gpus=${gpus}${cfg.model ? `,model=${cfg.model}` : ""}`, "--upstream"));
    }
    let cpuEnergy: CpuEnergyMeter | undefined;
    if (cfg.rapl !== "off") {
      try {
        cpuEnergy = raplMeter(createRaplReader({ clock, root: cfg.powercapRoot }));
      } catch (err) {
        if (cfg.rapl === "on") throw new ConfigError("--rapl", `on, but ${errorMessage(err)}`);
        process.stderr.write(`agent ${cfg.nodeId}: no CPU energy (RAPL): ${errorMessage(err)}\n`);
      }
    }
    // Replies come under the node's own inbox prefix: its NATS user may subscribe to no other (infra/nats/auth.ts).
    const nc = await connectNats(cfg, `joulestream-agent-${cfg.nodeId}`, { inboxPrefix: nodeInboxPrefix(cfg.nodeId) });
    const agent = await startAgent({
      nc,
      node: cfg.nodeId,
      source,
      instances,
      clock,
      sampleIntervalMs: cfg.sampleIntervalMs,
      publishIntervalMs: cfg.publishIntervalMs,
      continuousUsage: !cfg.noContinuousUsage,
      ...(cfg.prefillTokensPerS !== undefined ? { prefillTokensPerS: cfg.prefillTokensPerS } : {}),
      ...(cfg.kvCapacityTokens !== undefined ? { kvCapacityTokens: cfg.kvCapacityTokens } : {}),
      ...(cfg.prefillCtxTokens !== undefined ? { prefillPositionCost: { k: cfg.prefillCtxTokens, calibrationPosition: (cfg.prefillCalibrationPromptTokens - 1) / 2 } } : {}),
      engineMetrics: cfg.engineMetrics,
      engineMetricsIntervalMs: cfg.engineMetricsIntervalMs,
      spoolDir: cfg.spoolDir ?? join(tmpdir(), `joulestream-spool-${cfg.nodeId}`),
      ...(clockBackend ? { clockBackend } : {}),
      ...(cpuEnergy ? { cpuEnergy } : {}),
      ...(cfg.replicas !== undefined ? { replicas: cfg.replicas } : {}),
      log: (l) => process.stderr.write(`agent: ${l}\n`),
    });
    // Signals are handled before the taps are announced: whoever waits for them may stop the agent
    // at once, and it must still flush what it holds.
    const stopped = runUntilSignal(() => agent.stop(), () => nc.drain());
    for (const [id, url] of Object.entries(agent.tapUrls)) process.stderr.write(`agent ${cfg.nodeId}: instance ${id} tap at ${url}\n`);
    const unreadable = described.unreadableGpus?.length ? ` (and GPU ${described.unreadableGpus.join(", ")} it cannot read)` : "";
    process.stderr.write(`agent ${cfg.nodeId}: ${described.gpus.length} GPUs via ${source.kind}${unreadable}${cpuEnergy ? `, CPU energy of ${cpuEnergy.packages} package(s) via RAPL` : ""}${powerOnly ? " (power only)" : ""}, publishing to ${cfg.nats}\n`);
    await stopped;
    return 0;
  },
);
