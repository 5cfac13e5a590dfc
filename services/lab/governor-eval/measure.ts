import { influxQuery, influxString, type InfluxTarget } from "../../../shared/influxql.ts";
import { RetryableError } from "../../../shared/errors.ts";

/**
 * What an arm cost and delivered, read back from InfluxDB as the analyzer wrote it — never from
 * the simulator's own bookkeeping: node_energy (every GPU's counter deltas per 1-s window, idle
 * included) over the arm's window for its nodes, request_energy for its runs (energy attributed
 * to requests, and slo_met where the analyzer joined the load generator's result).
 */
export interface ArmEnergy {
  /** Σ measured_j of the arm's nodes over [t0, t1), J. */
  energyJ: number;
  /** 1-s windows counted (nodes × seconds when none is missing). */
  windows: number;
  byNodeJ: Record<string, number>;
  /** request_energy of the arm's runs: requests, Σ energy_j, Σ output tokens, slo_met counts. */
  requests: number;
  attributedJ: number;
  outputTokens: number;
  sloJoined: number;
  sloMet: number;
  /** Fleet power (W) and mean SM clock of busy GPUs (MHz) per `bucketS`, for the charts. */
  timeline: { tMs: number; powerW: number; energyJ: number; clockMhz?: number }[];
  bucketS: number;
  /** With a carbon series: emissions of the arm's energy, g CO2. */
  gco2?: number;
  /** Mean SM clock per node per bucket. */
  clocks: { tMs: number; node: string; clockMhz: number }[];
}

const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The node filter of an arm: its nodes are `<prefix>-n<i>`. */
const nodesOf = (prefix: string) => `"node" =~ /^${prefix.replace(/[^A-Za-z0-9_-]/g, "")}-n[0-9]+$/`;

/** Waits until the analyzer has written the last window before t1 for every node of the arm. */
export async function waitForWindows(influx: InfluxTarget, prefix: string, nodes: number, t1Ms: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await influxQuery(influx, `SELECT last("measured_j") FROM "node_energy" WHERE ${nodesOf(prefix)} AND time >= ${t1Ms - 1000}ms AND time < ${t1Ms}ms GROUP BY "node"`);
    if (s.filter((x) => x.rows.length > 0).length >= nodes || signal?.aborted) return;
    if (Date.now() > deadline) throw new RetryableError("TIMEOUT", `the analyzer wrote no node_energy for every ${prefix} node at ${new Date(t1Ms - 1000).toISOString()} within ${timeoutMs} ms`);
    await sleep(500);
  }
}

export async function measureArm(influx: InfluxTarget, o: { prefix: string; runIds: string[]; t0Ms: number; t1Ms: number; bucketS: number }): Promise<ArmEnergy> {
  const range = `time >= ${o.t0Ms}ms AND time < ${o.t1Ms}ms`;
  const where = `${nodesOf(o.prefix)} AND ${range}`;
  const byNode = await influxQuery(influx, `SELECT sum("measured_j") AS e, count("measured_j") AS n FROM "node_energy" WHERE ${where} GROUP BY "node"`);
  const byNodeJ: Record<string, number> = {};
  let energyJ = 0;
  let windows = 0;
  for (const s of byNode) {
    const r = s.rows[0] ?? {};
    byNodeJ[s.tags.node ?? "?"] = num(r.e);
    energyJ += num(r.e);
    windows += num(r.n);
  }
  const runs = o.runIds.map((id) => `"run_id" = ${influxString(id)}`).join(" OR ");
  const [req] = await influxQuery(influx, `SELECT count("energy_j") AS n, sum("energy_j") AS e, sum("output_tokens") AS o FROM "request_energy" WHERE (${runs}) AND time > 0`);
  const [joined] = await influxQuery(influx, `SELECT count("slo_met") AS n FROM "request_energy" WHERE (${runs}) AND time > 0`);
  const [met] = await influxQuery(influx, `SELECT count("slo_met") AS n FROM "request_energy" WHERE (${runs}) AND "slo_met" = true AND time > 0`);
  const b = `${o.bucketS}s`;
  const [power] = await influxQuery(influx, `SELECT sum("measured_j") / ${o.bucketS} AS p FROM "node_energy" WHERE ${where} GROUP BY time(${b}) fill(none)`);
  const [clock] = await influxQuery(influx, `SELECT mean("sm_clock_mhz") AS f FROM "gpu_energy" WHERE ${where} AND "util_pct" > 0 GROUP BY time(${b}) fill(none)`);
  const perNode = await influxQuery(influx, `SELECT mean("sm_clock_mhz") AS f FROM "gpu_energy" WHERE ${where} GROUP BY time(${b}), "node" fill(none)`);
  const clockAt = new Map((clock?.rows ?? []).map((r) => [num(r.time), num(r.f)]));
  const r0 = req?.rows[0] ?? {};
  return {
    energyJ,
    windows,
    byNodeJ,
    requests: num(r0.n),
    attributedJ: num(r0.e),
    outputTokens: num(r0.o),
    sloJoined: num(joined?.rows[0]?.n),
    sloMet: num(met?.rows[0]?.n),
    bucketS: o.bucketS,
    timeline: (power?.rows ?? []).map((r) => ({ tMs: num(r.time), powerW: num(r.p), energyJ: num(r.p) * o.bucketS, ...(clockAt.has(num(r.time)) ? { clockMhz: clockAt.get(num(r.time))! } : {}) })),
    clocks: perNode.flatMap((s) => s.rows.map((r) => ({ tMs: num(r.time), node: s.tags.node ?? "?", clockMhz: num(r.f) }))),
  };
}
