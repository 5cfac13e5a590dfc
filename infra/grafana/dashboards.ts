import { dashboard, type Dashboard } from "./builder.ts";

/**
 * joulestream's Grafana dashboards, over the InfluxDB schema of services/analyzer/points.ts:
 * gpu_energy (per GPU and window: energy, and power, clocks, utilization and temperature of its
 * samples; raw 10 Hz samples in gpu_power only with the analyzer's --raw-samples, so no panel needs
 * them), node_energy, instance_energy, request_energy, and the pipeline's own
 * health in agent_stats and analyzer_stats; governor_decision, written by `joulestream govern
 * --influx-url`. PENDING_MEASUREMENTS lists measurements a panel may read that the demo's pipeline
 * does not write: governor_decision (no governor in the demo), whose panels
 * test/governor-eval.test.ts runs against the InfluxDB of a governed run instead.
 */
export const PENDING_MEASUREMENTS = ["governor_decision"] as const;

const node = `"node" =~ /^$node$/`;
const nodeVar = { name: "node", label: "node", query: `SHOW TAG VALUES FROM "gpu_energy" WITH KEY = "node"` };
const modelVar = { name: "model", label: "model", query: `SHOW TAG VALUES FROM "request_energy" WITH KEY = "model"` };
const classVar = { name: "workload_class", label: "workload class", query: `SHOW TAG VALUES FROM "request_energy" WITH KEY = "workload_class"` };
const reqFilter = `$timeFilter AND ${node} AND "model" =~ /^$model$/ AND "workload_class" =~ /^$workload_class$/`;

/** Per-GPU power averaged per interval, then summed: the fleet's (or a node's) draw in W. */
const summedPower = (by: string) => `SELECT sum("p") AS "power_w" FROM (SELECT mean("power_w") AS "p" FROM "gpu_energy" WHERE $timeFilter AND ${node} GROUP BY time($__interval), "node", "gpu") GROUP BY time($__interval)${by}`;

export const fleet = dashboard({
  uid: "joulestream-fleet",
  title: "joulestream — fleet power and energy",
  description: "GPU power and energy across the fleet, measured vs attributed to requests vs idle.",
  tags: ["fleet"],
  variables: [nodeVar],
  panels: [
    { title: "Fleet GPU power", unit: "watt", w: 12, queries: [{ query: summedPower(""), alias: "all GPUs" }] },
    { title: "Power by node", unit: "watt", w: 12, stack: true, queries: [{ query: summedPower(`, "node"`), alias: "$tag_node" }] },
    { title: "Energy in range", type: "stat", unit: "kwatth", decimals: 3, w: 6, h: 5, queries: [{ query: `SELECT sum("measured_j") / 3600000 AS "kwh" FROM "node_energy" WHERE $timeFilter AND ${node}` }] },
    { title: "Attributed to requests", type: "stat", unit: "percent", w: 6, h: 5, queries: [{ query: `SELECT sum("attributed_j") / sum("measured_j") * 100 AS "attributed" FROM "node_energy" WHERE $timeFilter AND ${node}` }] },
    { title: "Idle share", type: "stat", unit: "percent", w: 6, h: 5, description: "Energy of windows in which an instance did no work, over all measured energy.", queries: [{ query: `SELECT sum("idle_j") / sum("measured_j") * 100 AS "idle" FROM "node_energy" WHERE $timeFilter AND ${node}` }] },
    { title: "Mean GPU power", type: "stat", unit: "watt", w: 6, h: 5, queries: [{ query: `SELECT mean("power_w") FROM "gpu_energy" WHERE $timeFilter AND ${node}` }] },
    { title: "Energy per interval: measured, attributed, idle", unit: "joule", w: 12, queries: [{ query: `SELECT sum("measured_j") AS "measured", sum("attributed_j") AS "attributed", sum("idle_j") AS "idle", sum("unassigned_j") AS "unassigned" FROM "node_energy" WHERE $timeFilter AND ${node} GROUP BY time($__interval) fill(none)` }] },
    // Long ranges (weeks, months): the 1-min rollups the continuous queries keep 400 days (services/analyzer/rollups.ts).
    { title: "Fleet energy per interval, from 1-min rollups (long ranges)", unit: "joule", w: 12, description: "From the rollup_1m retention policy, filled each minute by continuous queries (analyzer --influx-rollups, joulestream up): use it past the 7 days raw data is kept.", queries: [{ query: `SELECT sum("measured_j") AS "measured", sum("attributed_j") AS "attributed", sum("idle_j") AS "idle" FROM "rollup_1m"."node_energy" WHERE $timeFilter AND ${node} GROUP BY time($__interval) fill(none)` }] },
    { title: "Idle share over time", unit: "percent", w: 12, queries: [{ query: `SELECT sum("idle_j") / sum("measured_j") * 100 AS "idle share" FROM "node_energy" WHERE $timeFilter AND ${node} GROUP BY time($__interval), "node" fill(none)`, alias: "$tag_node" }] },
  ],
});

export const nodeGpus = dashboard({
  uid: "joulestream-node",
  title: "joulestream — node GPUs",
  description: "Per-GPU power, clocks, utilization, temperature and energy per window of the selected nodes.",
  tags: ["node"],
  variables: [nodeVar, { name: "gpu", label: "GPU", query: `SHOW TAG VALUES FROM "gpu_energy" WITH KEY = "gpu" WHERE ${node}` }],
  panels: [
    ...([
      ["Power per GPU", "power_w", "watt"],
      ["SM clock per GPU", "sm_clock_mhz", "rotmhz"],
      ["Memory clock per GPU", "mem_clock_mhz", "rotmhz"],
      ["Utilization per GPU", "util_pct", "percent"],
      ["Temperature per GPU", "temp_c", "celsius"],
    ] as const).map(([title, field, unit]) => ({ title, unit, queries: [{ query: `SELECT mean("${field}") FROM "gpu_energy" WHERE $timeFilter AND ${node} AND "gpu" =~ /^$gpu$/ GROUP BY time($__interval), "node", "gpu" fill(none)`, alias: "$tag_node/$tag_gpu" }] })),
    { title: "Energy per window per GPU (counter deltas)", unit: "joule", queries: [{ query: `SELECT sum("energy_j") FROM "gpu_energy" WHERE $timeFilter AND ${node} AND "gpu" =~ /^$gpu$/ GROUP BY time($__interval), "node", "gpu" fill(none)`, alias: "$tag_node/$tag_gpu" }] },
    // Written only by agents that can read RAPL (--rapl): the node's CPU packages beside its GPUs.
    { title: "Node energy per window: GPUs and CPU packages (RAPL)", unit: "joule", queries: [{ query: `SELECT sum("measured_j") AS "GPUs", sum("cpu_j") AS "CPU packages" FROM "node_energy" WHERE $timeFilter AND ${node} GROUP BY time($__interval), "node" fill(none)`, alias: "$tag_node $col" }] },
    // "method" is a field (counter, integrated, mixed), not a tag: InfluxQL cannot GROUP BY it.
    { title: "Counter resets, windows and energy method", type: "table", w: 24, h: 6, queries: [{ query: `SELECT sum("resets") AS "resets", count("energy_j") AS "windows", last("method") AS "last method" FROM "gpu_energy" WHERE $timeFilter AND ${node} GROUP BY "node", "gpu"` }] },
  ],
});

export const requests = dashboard({
  uid: "joulestream-requests",
  title: "joulestream — energy per request and per token",
  description: "Energy attributed to each request, by model, workload class and configuration (SM clock), and per instance.",
  tags: ["requests"],
  variables: [nodeVar, modelVar, classVar],
  panels: [
    { title: "Energy per request by workload class", unit: "joule", queries: [{ query: `SELECT mean("energy_j") FROM "request_energy" WHERE ${reqFilter} GROUP BY time($__interval), "workload_class" fill(none)`, alias: "$tag_workload_class" }] },
    { title: "Energy per output token by workload class", unit: "joule", queries: [{ query: `SELECT mean("j_per_output_token") FROM "request_energy" WHERE ${reqFilter} GROUP BY time($__interval), "workload_class" fill(none)`, alias: "$tag_workload_class" }] },
    { title: "Energy per token by model", unit: "joule", queries: [{ query: `SELECT mean("j_per_token") FROM "request_energy" WHERE ${reqFilter} GROUP BY time($__interval), "model" fill(none)`, alias: "$tag_model" }] },
    // request_energy has no SM-clock tag (the analyzer does not know a request's clock): an instance is one serving configuration (GPUs, TP).
    { title: "Energy per output token by configuration (instance)", type: "bargauge", unit: "joule", description: "Each instance is one serving configuration (its GPUs and tensor parallelism); compare the SM clocks in the node dashboard.", queries: [{ query: `SELECT mean("j_per_output_token") FROM "request_energy" WHERE ${reqFilter} GROUP BY "node", "instance", "model"`, alias: "$tag_model @ $tag_node/$tag_instance" }] },
    { title: "Prefill vs decode energy per request", unit: "joule", stack: true, queries: [{ query: `SELECT mean("prefill_j") AS "prefill", mean("decode_j") AS "decode" FROM "request_energy" WHERE ${reqFilter} GROUP BY time($__interval) fill(none)` }] },
    { title: "Requests per interval by status", stack: true, queries: [{ query: `SELECT count("energy_j") FROM "request_energy" WHERE ${reqFilter} GROUP BY time($__interval), "status" fill(0)`, alias: "$tag_status" }] },
    { title: "Instance energy per decode token", unit: "joule", queries: [{ query: `SELECT mean("j_per_token") FROM "instance_energy" WHERE $timeFilter AND ${node} AND "model" =~ /^$model$/ GROUP BY time($__interval), "node", "instance" fill(none)`, alias: "$tag_node/$tag_instance" }] },
    { title: "Instance throughput (decode tokens/s) and requests in flight", queries: [{ query: `SELECT mean("tokens_per_s") AS "tokens/s", mean("in_flight") AS "in flight" FROM "instance_energy" WHERE $timeFilter AND ${node} AND "model" =~ /^$model$/ GROUP BY time($__interval), "node", "instance" fill(none)`, alias: "$tag_node/$tag_instance $col" }] },
    { title: "By workload class (range)", type: "table", w: 24, h: 8, queries: [{ query: `SELECT count("energy_j") AS "requests", mean("energy_j") AS "J/request", mean("j_per_output_token") AS "J/output token", mean("prompt_tokens") AS "prompt tokens", mean("output_tokens") AS "output tokens", mean("duration_ms") AS "duration ms" FROM "request_energy" WHERE ${reqFilter} GROUP BY "model", "workload_class"` }] },
  ],
});

export const slo = dashboard({
  uid: "joulestream-slo",
  title: "joulestream — latency and SLO attainment",
  description: "Client-side TTFT/TPOT and SLO attainment (the load generator's results, joined by the analyzer into request_energy: ttft_ms, tpot_ms, slo_met), and server-side request latency (duration_ms, as the agent's tap saw it) against an end-to-end SLO.",
  tags: ["slo"],
  variables: [nodeVar, modelVar, classVar, { name: "e2e_slo_ms", label: "E2E SLO (ms)", textbox: "20000" }],
  panels: [
    { title: "SLO attainment (TTFT and TPOT, client side)", type: "stat", unit: "percentunit", w: 8, h: 6, description: "Share of load-tested requests that met the analyzer's --slo-ttft-ms/--slo-tpot-ms targets.", queries: [{ query: `SELECT count("slo_met") AS "met" FROM "request_energy" WHERE ${reqFilter} AND "slo_met" = true`, alias: "met" }, { query: `SELECT count("slo_met") AS "all" FROM "request_energy" WHERE ${reqFilter}`, alias: "all" }], transformations: [{ id: "merge", options: {} }, { id: "calculateField", options: { mode: "binary", binary: { left: "met", operator: "/", right: "all" }, alias: "attainment", replaceFields: true } }] },
    { title: "TTFT and TPOT percentiles (client side)", unit: "ms", w: 16, h: 6, queries: [{ query: `SELECT percentile("ttft_ms", 50) AS "TTFT p50", percentile("ttft_ms", 99) AS "TTFT p99", percentile("tpot_ms", 50) AS "TPOT p50", percentile("tpot_ms", 99) AS "TPOT p99" FROM "request_energy" WHERE ${reqFilter} GROUP BY time($__interval) fill(none)` }] },
    { title: "Requests within the E2E SLO", type: "stat", unit: "percentunit", w: 8, h: 6, description: "Share of requests whose server-side duration met $e2e_slo_ms ms.", queries: [{ query: `SELECT count("energy_j") AS "met" FROM "request_energy" WHERE ${reqFilter} AND "duration_ms" <= $e2e_slo_ms`, alias: "met" }, { query: `SELECT count("energy_j") AS "all" FROM "request_energy" WHERE ${reqFilter}`, alias: "all" }], transformations: [{ id: "merge", options: {} }, { id: "calculateField", options: { mode: "binary", binary: { left: "met", operator: "/", right: "all" }, alias: "attainment", replaceFields: true } }] },
    { title: "E2E latency percentiles", unit: "ms", w: 16, h: 6, queries: [{ query: `SELECT percentile("duration_ms", 50) AS "p50", percentile("duration_ms", 90) AS "p90", percentile("duration_ms", 99) AS "p99" FROM "request_energy" WHERE ${reqFilter} GROUP BY time($__interval) fill(none)` }] },
    // "All" rather than "over SLO": a query matching no point returns no series at all in InfluxQL.
    { title: "Requests within the SLO vs all, per interval", w: 12, queries: [{ query: `SELECT count("energy_j") AS "within SLO" FROM "request_energy" WHERE ${reqFilter} AND "duration_ms" <= $e2e_slo_ms GROUP BY time($__interval) fill(0)` }, { query: `SELECT count("energy_j") AS "all" FROM "request_energy" WHERE ${reqFilter} GROUP BY time($__interval) fill(0)` }] },
    { title: "p90 E2E latency by workload class", unit: "ms", w: 12, queries: [{ query: `SELECT percentile("duration_ms", 90) FROM "request_energy" WHERE ${reqFilter} GROUP BY time($__interval), "workload_class" fill(none)`, alias: "$tag_workload_class" }] },
  ],
});

export const pipeline = dashboard({
  uid: "joulestream-pipeline",
  title: "joulestream — pipeline health",
  description: "Analyzer and agent self-reports (analyzer_stats, agent_stats — written once the services report them) and what the data itself shows: windows written, incomplete windows, unassigned energy.",
  tags: ["pipeline"],
  variables: [nodeVar],
  panels: [
    { title: "Analyzer lag", unit: "ms", queries: [{ query: `SELECT max("lag_ms") FROM "analyzer_stats" WHERE $timeFilter GROUP BY time($__interval), "analyzer" fill(none)`, alias: "$tag_analyzer" }] },
    // Counters since each analyzer started (a rate needs two reports, which a short run may not have).
    { title: "Analyzer: received, acked (and acked again), dead-lettered (since start)", queries: [{ query: `SELECT last("received") AS "received", last("acked") AS "acked", last("reacked") AS "acked again", last("dead_lettered") AS "dead-lettered" FROM "analyzer_stats" WHERE $timeFilter GROUP BY time($__interval), "analyzer", "replica" fill(none)`, alias: "$tag_analyzer/$tag_replica $col" }] },
    { title: "Analyzer pending, sink retries and points InfluxDB refused", queries: [{ query: `SELECT last("pending") AS "pending", non_negative_difference(last("sink_retries")) AS "sink retries", non_negative_difference(last("points_rejected")) AS "points refused" FROM "analyzer_stats" WHERE $timeFilter GROUP BY time($__interval), "analyzer", "replica" fill(none)`, alias: "$tag_analyzer/$tag_replica $col" }] },
    { title: "Agent drops and queue", queries: [{ query: `SELECT non_negative_difference(last("dropped")) AS "dropped", last("queued") AS "queued", non_negative_difference(last("published")) AS "published", non_negative_difference(last("spilled")) AS "spilled to disk" FROM "agent_stats" WHERE $timeFilter AND ${node} GROUP BY time($__interval), "node" fill(none)`, alias: "$tag_node $col" }] },
    // Sample time is how long the (synchronous) NVML calls held the agent: a slow driver shows here first.
    { title: "Agent sampling: jitter p99, sample time p99", unit: "ms", queries: [{ query: `SELECT max("jitter_p99_ms") AS "jitter", max("sample_p99_ms") AS "sample time" FROM "agent_stats" WHERE $timeFilter AND ${node} GROUP BY time($__interval), "node" fill(none)`, alias: "$tag_node $col" }] },
    // A GPU with no sample in a window (lost, unreadable): its energy is missing from node totals.
    { title: "Agent: GPUs without samples", queries: [{ query: `SELECT max("missing_gpus") FROM "agent_stats" WHERE $timeFilter AND ${node} GROUP BY time($__interval), "node" fill(none)`, alias: "$tag_node" }] },
    { title: "Windows written per interval", queries: [{ query: `SELECT count("measured_j") FROM "node_energy" WHERE $timeFilter AND ${node} GROUP BY time($__interval), "node" fill(0)`, alias: "$tag_node" }] },
    { title: "Unassigned energy (no instance owns the GPU)", unit: "joule", queries: [{ query: `SELECT sum("unassigned_j") FROM "node_energy" WHERE $timeFilter AND ${node} GROUP BY time($__interval), "node" fill(none)`, alias: "$tag_node" }] },
    { title: "Last window per node", type: "table", queries: [{ query: `SELECT last("measured_j") AS "measured J", last("incomplete") AS "incomplete" FROM "node_energy" WHERE $timeFilter AND ${node} GROUP BY "node"` }] },
  ],
});

const gov = `$timeFilter AND ${node}`;

export const governor = dashboard({
  uid: "joulestream-governor",
  title: "joulestream — energy governor",
  description: "The governor's decisions (governor_decision, written by joulestream govern --influx-url) over time beside SLO attainment and the power they buy.",
  tags: ["governor"],
  variables: [nodeVar],
  panels: [
    { title: "SM clock decided per instance", unit: "rotmhz", w: 12, queries: [{ query: `SELECT last("to_mhz") FROM "governor_decision" WHERE ${gov} GROUP BY time($__interval), "node", "instance" fill(none)`, alias: "$tag_node/$tag_instance" }] },
    { title: "SLO attainment the governor saw per period (server side)", unit: "percentunit", w: 12, queries: [{ query: `SELECT mean("attainment") FROM "governor_decision" WHERE ${gov} GROUP BY time($__interval), "node", "instance" fill(none)`, alias: "$tag_node/$tag_instance" }] },
    { title: "Decisions per interval by action", w: 12, stack: true, queries: [{ query: `SELECT count("to_mhz") FROM "governor_decision" WHERE ${gov} GROUP BY time($__interval), "action" fill(0)`, alias: "$tag_action" }] },
    { title: "Burst-guard boosts to the maximum per interval, by node (requests were waiting for their first token)", w: 12, stack: true, queries: [{ query: `SELECT count("waiting") FROM "governor_decision" WHERE ${gov} AND "guard" = true AND "action" = 'max' GROUP BY time($__interval), "node" fill(0)`, alias: "$tag_node" }] },
    { title: "Requests within both SLOs vs all, per interval (client side)", w: 12, queries: [{ query: `SELECT count("slo_met") AS "within SLO" FROM "request_energy" WHERE ${gov} AND "slo_met" = true GROUP BY time($__interval) fill(0)` }, { query: `SELECT count("slo_met") AS "all" FROM "request_energy" WHERE ${gov} GROUP BY time($__interval) fill(0)` }] },
    { title: "Fleet GPU power", unit: "watt", w: 12, queries: [{ query: summedPower(""), alias: "all GPUs" }] },
    { title: "Latest decision per instance", type: "table", w: 12, queries: [{ query: `SELECT last("to_mhz") AS "MHz", last("reason") AS "reason", last("applied") AS "applied" FROM "governor_decision" WHERE ${gov} GROUP BY "node", "instance"` }] },
  ],
});

export const DASHBOARDS: Record<string, Dashboard> = { fleet, node: nodeGpus, requests, slo, pipeline, governor };
