import { hostname } from "node:os";
import { z } from "zod";
import { connectNats, governorInboxPrefix, natsConfig, natsOptions, onShutdownSignal, errorMessage } from "../../shared/mod.ts";
import { defineCommand } from "../../shared/command.ts";
import { startGovernor } from "./governor.ts";
import { DEFAULT_POLICY } from "./policy.ts";
import { loadProfile } from "./profile.ts";
import { DEFAULT_GUARD } from "./burst-guard.ts";
import { createDecisionSink } from "./decision-points.ts";

const schema = natsConfig.extend({
  id: z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, "letters, digits, _ . - (up to 100)").default(`governor-${hostname().replace(/[^A-Za-z0-9_.-]/g, "_")}-${process.pid}`),
  periodMs: z.coerce.number().int().min(200).max(600_000).default(5000),
  leaseMs: z.coerce.number().int().min(1000).max(3600_000).optional(),
  dryRun: z.boolean().default(false),
  noBurstGuard: z.boolean().default(false),
  guardMaxPatience: z.coerce.number().int().min(0).default(DEFAULT_GUARD.maxPatience),
  ttftSloMs: z.coerce.number().positive(),
  tpotSloMs: z.coerce.number().positive(),
  attainment: z.coerce.number().gt(0).max(1).default(DEFAULT_POLICY.attainmentTarget),
  floorMhz: z.coerce.number().positive().default(DEFAULT_POLICY.floorMhz),
  maxStepMhz: z.coerce.number().positive().default(DEFAULT_POLICY.maxStepDownMhz),
  minSamples: z.coerce.number().int().min(1).default(DEFAULT_POLICY.minSamples),
  profile: z.string().optional(),
  node: z.array(z.string()).optional(),
  influxUrl: z.url().optional(),
  influxDb: z.string().min(1).default("joulestream"),
  influxToken: z.string().optional(),
  clockRange: z.string().regex(/^\d+:\d+:\d+$/, "MAX:MIN:STEP in MHz, e.g. 1980:345:15").default("1980:345:15"),
});

/** `1980:345:15` → 1980, 1965, …, 345. */
function clockSteps(spec: string): number[] {
  const [max, min, step] = spec.split(":").map(Number) as [number, number, number];
  const out: number[] = [];
  for (let f = max; f >= min && step > 0; f -= step) out.push(f);
  return out;
}

export const governCommand = defineCommand(
  {
    name: "govern",
    summary: "energy governor: per instance, the SM clock with the least energy per request within the SLO, set through the agents' clock control",
    options: {
      ...natsOptions,
      id: { type: "string", env: "JOULESTREAM_GOVERNOR_ID", description: "holder name for leases and the audit trail (unique per governor)", defaultText: "governor-<host>-<pid>" },
      "period-ms": { type: "string", arg: "MS", description: "control period", defaultText: "5000" },
      "lease-ms": { type: "string", arg: "MS", description: "lease on each clock change; the agent undoes it unless renewed", defaultText: "3 × period, ≥ 1000" },
      "dry-run": { type: "boolean", description: "decide and publish decisions only; never change a clock" },
      "no-burst-guard": { type: "boolean", description: "the control period's clock only: no boost to the maximum between periods when requests wait for their first token" },
      "guard-max-patience": { type: "string", arg: "N", description: "most requests the burst guard lets wait for their first token below the maximum clock (it learns up to this while every request meets the SLO)", defaultText: String(DEFAULT_GUARD.maxPatience) },
      "ttft-slo-ms": { type: "string", arg: "MS", description: "SLO: time to first token (p90 and per request)" },
      "tpot-slo-ms": { type: "string", arg: "MS", description: "SLO: time per output token (p90 and per request)" },
      attainment: { type: "string", arg: "SHARE", description: "share of requests that must meet both SLOs", defaultText: String(DEFAULT_POLICY.attainmentTarget) },
      "floor-mhz": { type: "string", arg: "MHZ", description: "lowest clock the governor sets", defaultText: String(DEFAULT_POLICY.floorMhz) },
      "max-step-mhz": { type: "string", arg: "MHZ", description: "largest step down per period", defaultText: String(DEFAULT_POLICY.maxStepDownMhz) },
      "min-samples": { type: "string", arg: "N", description: "fewest finished requests in a period to act on it", defaultText: String(DEFAULT_POLICY.minSamples) },
      profile: { type: "string", arg: "FILE", description: "the lab's results.json (joulestream sweep --out DIR) as the prior" },
      "clock-range": { type: "string", arg: "MAX:MIN:STEP", description: "clocks to choose from where a node's inventory lists none (DCGM source)", defaultText: "1980:345:15 (H100 SXM)" },
      node: { type: "string", multiple: true, description: "govern only this node (repeatable)", defaultText: "every node in the inventory" },
      "influx-url": { type: "string", arg: "URL", env: "JOULESTREAM_INFLUX_URL", description: "also write each decision to InfluxDB (governor_decision, for the governor dashboard)", defaultText: "not written" },
      "influx-db": { type: "string", env: "JOULESTREAM_INFLUX_DB", description: "InfluxDB database (2.x: the bucket's DBRP mapping)", defaultText: "joulestream" },
      "influx-token": { type: "string", env: "JOULESTREAM_INFLUX_TOKEN", description: "InfluxDB 2.x/3.x token" },
    },
    schema,
    notes: [
      "Safe rollout on a real fleet: run with --dry-run first and read the decisions (joulestream tail 'audit.v1.>'); then govern one node (--node); then all. Agents must run with --allow-clock-control. Kill switch: publish anything on gov.v1.kill (nats pub gov.v1.kill x): every governor gives its clocks back and stops acting.",
    ],
    examples: ["joulestream govern --dry-run --ttft-slo-ms 2000 --tpot-slo-ms 100", "joulestream govern --node gpu-07 --ttft-slo-ms 2000 --tpot-slo-ms 100 --profile out/paper/results.json"],
  },
  async (cfg) => {
    const profile = cfg.profile ? loadProfile(cfg.profile) : undefined;
    // Replies under its own prefix: the governor's NATS user (infra/nats/auth.ts) may read only those.
    const nc = await connectNats(cfg, cfg.id, { inboxPrefix: governorInboxPrefix() });
    const log = (l: string) => process.stderr.write(`${l}\n`);
    const gov = await startGovernor({
      nc, id: cfg.id, periodMs: cfg.periodMs, leaseMs: cfg.leaseMs ?? Math.max(1000, 3 * cfg.periodMs), dryRun: cfg.dryRun,
      slo: { ttftSloMs: cfg.ttftSloMs, tpotSloMs: cfg.tpotSloMs, attainmentTarget: cfg.attainment },
      policy: { floorMhz: cfg.floorMhz, maxStepDownMhz: cfg.maxStepMhz, minSamples: cfg.minSamples },
      burstGuard: cfg.noBurstGuard ? false : { maxPatience: cfg.guardMaxPatience },
      fallbackClocksMhz: clockSteps(cfg.clockRange), ...(profile ? { profile } : {}), ...(cfg.node ? { nodes: cfg.node } : {}), log,
      ...(cfg.influxUrl ? { decisionSink: createDecisionSink({ url: cfg.influxUrl, database: cfg.influxDb, ...(cfg.influxToken ? { token: cfg.influxToken } : {}) }) } : {}),
    });
    log(`governor ${cfg.id}: ${cfg.dryRun ? "DRY RUN, " : ""}period ${cfg.periodMs} ms, burst guard ${cfg.noBurstGuard ? "off" : `on (patience ≤ ${cfg.guardMaxPatience})`}, SLO TTFT ${cfg.ttftSloMs} ms / TPOT ${cfg.tpotSloMs} ms at ${cfg.attainment}${profile ? `, prior from ${cfg.profile} (${profile.rows.length} rows)` : ""}`);
    await new Promise<void>((resolve) => {
      onShutdownSignal(async () => {
        try {
          await gov.stop();
        } catch (err) {
          log(`governor: stop failed (${errorMessage(err)}); the agents' leases undo its clocks`);
        }
        await nc.close();
        resolve();
      });
    });
    return 0;
  },
);
