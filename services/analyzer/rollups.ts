import { influxQuery, type InfluxTarget } from "../../shared/mod.ts";

/**
 * Retention for fleet-sized storage, on InfluxDB 1.x (InfluxQL retention policies and continuous
 * queries; 2.x and 3.x do the same with bucket retention and tasks, not created here):
 *
 *   raw        (default RP)  everything the analyzer writes, kept `rawDuration` (7 days)
 *   rollup_1m                per-minute sums and means of the energy measurements, kept `rollupDuration` (400 days)
 *
 * A continuous query per measurement fills rollup_1m each minute; dashboards read it for ranges
 * longer than raw keeps (infra/grafana/dashboards.ts). `rollupBackfill()` gives the same SELECTs
 * over a time range, to fill the rollups for data written before the queries existed.
 * The statements are also shipped as infra/influxdb/rollups.influxql for operators.
 */
export const RAW_RP = "raw";
export const ROLLUP_RP = "rollup_1m";

export interface RollupOptions {
  /** InfluxQL duration literals. */
  rawDuration?: string;
  rollupDuration?: string;
}

/** measurement → the per-minute aggregates of its fields (tags are all kept: GROUP BY *). */
export const ROLLUPS: Record<string, string[]> = {
  node_energy: ['sum("measured_j") AS "measured_j"', 'sum("attributed_j") AS "attributed_j"', 'sum("idle_j") AS "idle_j"', 'sum("unassigned_j") AS "unassigned_j"', 'count("measured_j") AS "windows"'],
  gpu_energy: ['sum("energy_j") AS "energy_j"', 'mean("power_w") AS "power_w"', 'max("power_max_w") AS "power_max_w"', 'mean("sm_clock_mhz") AS "sm_clock_mhz"', 'mean("util_pct") AS "util_pct"', 'max("temp_c") AS "temp_c"'],
  instance_energy: ['sum("energy_j") AS "energy_j"', 'sum("attributed_j") AS "attributed_j"', 'sum("idle_j") AS "idle_j"', 'sum("prefill_tokens") AS "prefill_tokens"', 'sum("decode_tokens") AS "decode_tokens"', 'mean("active_requests") AS "active_requests"'],
  request_energy: ['count("energy_j") AS "requests"', 'sum("energy_j") AS "energy_j"', 'sum("prompt_tokens") AS "prompt_tokens"', 'sum("output_tokens") AS "output_tokens"', 'mean("ttft_ms") AS "ttft_ms"', 'mean("tpot_ms") AS "tpot_ms"'],
};

const q = (s: string) => `"${s.replace(/"/g, '\\"')}"`;

function selectInto(db: string, measurement: string, where = ""): string {
  return `SELECT ${ROLLUPS[measurement]!.join(", ")} INTO ${q(db)}.${q(ROLLUP_RP)}.${q(measurement)} FROM ${q(db)}.${q(RAW_RP)}.${q(measurement)}${where} GROUP BY time(1m), *`;
}

/** Every statement, in order; each is idempotent when nothing differs (InfluxQL's CREATE … is). */
export function rollupStatements(db: string, opts: RollupOptions = {}): string[] {
  return [
    `CREATE RETENTION POLICY ${q(RAW_RP)} ON ${q(db)} DURATION ${opts.rawDuration ?? "7d"} REPLICATION 1 DEFAULT`,
    `CREATE RETENTION POLICY ${q(ROLLUP_RP)} ON ${q(db)} DURATION ${opts.rollupDuration ?? "400d"} REPLICATION 1`,
    ...Object.keys(ROLLUPS).map((m) => `CREATE CONTINUOUS QUERY ${q(`cq_${m}_1m`)} ON ${q(db)} BEGIN ${selectInto(db, m)} END`),
  ];
}

/** The continuous queries' work over [fromMs, toMs), run by hand (data from before they existed). */
export function rollupBackfill(db: string, fromMs: number, toMs: number): string[] {
  return Object.keys(ROLLUPS).map((m) => selectInto(db, m, ` WHERE time >= ${Math.floor(fromMs)}ms AND time < ${Math.ceil(toMs)}ms`));
}

/**
 * Creates the retention policies and continuous queries. Makes `raw` the database's default: data
 * an earlier version wrote to `autogen` stays there (and is not what default queries read).
 */
export async function ensureRollups(target: InfluxTarget, opts: RollupOptions = {}): Promise<void> {
  for (const s of rollupStatements(target.database, opts)) await influxQuery(target, s);
}
