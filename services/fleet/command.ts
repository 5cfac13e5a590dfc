import { z } from "zod";
import { connectNats, natsConfig, natsOptions, replicasConfig, replicasOptions, untilDone } from "../../shared/mod.ts";
import { defineCommand } from "../../shared/command.ts";
import { DEFAULT_NODE_PREFIX, startFleet, type FleetReport } from "./emulator.ts";
import { DEFAULT_GPUS, DEFAULT_RATE_PER_INSTANCE_S, DEFAULT_TP } from "./node-model.ts";

const schema = natsConfig.extend(replicasConfig.shape).extend({
  nodes: z.coerce.number().int().min(1).max(100_000).default(10),
  gpusPerNode: z.coerce.number().int().min(1).max(64).default(DEFAULT_GPUS),
  tp: z.coerce.number().int().min(1).max(64).default(DEFAULT_TP),
  duration: z.coerce.number().positive().max(7 * 24 * 3600).default(60),
  realTime: z.boolean().default(false),
  rate: z.coerce.number().min(0).max(1000).default(DEFAULT_RATE_PER_INSTANCE_S),
  seed: z.coerce.number().int().default(1),
  nodePrefix: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/).default(DEFAULT_NODE_PREFIX),
  startMs: z.coerce.number().int().min(0).optional(),
  runId: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/).optional(),
});

export const fleetCommand = defineCommand(
  {
    name: "fleet",
    summary: "emulate a GPU fleet's agents at protocol level (POWER, WORK, REQUESTS) for load tests of the analyzer",
    options: {
      ...natsOptions,
      ...replicasOptions,
      nodes: { type: "string", arg: "N", description: "emulated nodes", defaultText: "10" },
      "gpus-per-node": { type: "string", arg: "N", description: "GPUs per node, sampled at 10 Hz", defaultText: String(DEFAULT_GPUS) },
      tp: { type: "string", arg: "N", description: "GPUs per instance (tensor parallelism); instances per node = gpus / tp", defaultText: String(DEFAULT_TP) },
      duration: { type: "string", arg: "S", description: "seconds of emulated time (1-s windows)", defaultText: "60" },
      "real-time": { type: "boolean", description: "windows on the wall clock, published as they close (default: as fast as possible, synthetic timestamps)" },
      rate: { type: "string", arg: "REQ_PER_S", description: "mean Poisson request arrivals per second per instance", defaultText: String(DEFAULT_RATE_PER_INSTANCE_S) },
      seed: { type: "string", description: "random seed: the same seed publishes the same messages", defaultText: "1" },
      "node-prefix": { type: "string", arg: "ID", description: "node ids are <prefix>-0000, <prefix>-0001, ...", defaultText: DEFAULT_NODE_PREFIX },
      "start-ms": { type: "string", arg: "EPOCH_MS", description: "fast mode: time of the first window", defaultText: "2025-01-01T00:00:00Z" },
      "run-id": { type: "string", arg: "ID", description: "run label carried on request start events" },
    },
    schema,
    examples: ["joulestream fleet --nodes 50 --duration 30 --real-time", "joulestream fleet --nodes 10 --duration 600 --seed 7   # 10 emulated minutes, as fast as possible"],
  },
  async (cfg) => {
    const nc = await connectNats(cfg, "joulestream-fleet");
    const fleet = startFleet({
      nc,
      nodes: cfg.nodes,
      gpusPerNode: cfg.gpusPerNode,
      tp: cfg.tp,
      durationS: cfg.duration,
      realTime: cfg.realTime,
      ratePerInstanceS: cfg.rate,
      seed: cfg.seed,
      nodePrefix: cfg.nodePrefix,
      ...(cfg.startMs !== undefined ? { startMs: cfg.startMs } : {}),
      ...(cfg.runId ? { runId: cfg.runId } : {}),
      ...(cfg.replicas !== undefined ? { replicas: cfg.replicas } : {}),
      log: (l) => process.stderr.write(`fleet: ${l}\n`),
    });
    // Ctrl-C stops the emulation, and the report of what was sent is still printed before exit.
    const signals = untilDone(() => fleet.stop());
    try {
      let report: FleetReport;
      try {
        report = await fleet.done();
      } finally {
        await nc.drain();
      }
      process.stderr.write(formatReport(report));
      process.stdout.write(JSON.stringify(report) + "\n");
      return 0;
    } finally {
      signals.done();
    }
  },
);

export function formatReport(r: FleetReport): string {
  const rows: [string, string | number][] = [
    ["nodes × GPUs", `${r.nodes} × ${r.gpus / Math.max(1, r.nodes)} (${r.instances} instances)`],
    ["mode", r.realTime ? "real time" : "as fast as possible"],
    ["windows per node", r.windowsPerNode],
    ["published POWER/WORK/REQUESTS", `${r.published.power} / ${r.published.work} / ${r.published.requests}`],
    ["duplicates (already in stream)", r.published.duplicates],
    ["MB published", (r.published.bytes / 2 ** 20).toFixed(1)],
    ["requests started / ok / aborted", `${r.requests.started} / ${r.requests.ok} / ${r.requests.aborted}`],
    ["measured energy, J", r.truth.measuredJ.toFixed(3)],
    ["  of which attributed / idle, J", `${r.truth.attributedJ.toFixed(3)} / ${r.truth.idleJ.toFixed(3)}`],
    ["wall time, s", r.wallS.toFixed(1)],
  ];
  return rows.map(([k, v]) => `${k.padEnd(34)}${v}`).join("\n") + "\n";
}
