import { influxQuery, type InfluxTarget } from "../shared/mod.ts";

/**
 * What a fault scenario is judged on: what the faulted analyzer stored, against what an
 * unfaulted analyzer stores from the same recorded streams (the reference) and against what the
 * load generator produced. Pure (readStored aside): the verdict is a function of the figures.
 */
export interface StoredRequest {
  energyJ: number;
  /** The load generator's result is merged in (ttft/e2e/slo_met fields present). */
  joined: boolean;
}

export interface StoredWindow {
  startMs: number;
  measuredJ: number;
  attributedJ: number;
  idleJ: number;
  incomplete: boolean;
}

export interface StoredRun {
  requests: Map<string, StoredRequest>;
  windows: StoredWindow[];
}

export interface Observation {
  /** Request ids of every result the load generator produced (ok or not). */
  loadResults: readonly string[];
  faulted: StoredRun;
  reference: StoredRun;
  /** Messages the agent's and the load generator's outboxes did not get into JetStream (held or dropped). */
  unpublished: { agent: number; load: number };
  /** Exits nobody asked for. */
  crashes: readonly string[];
  /** Every stream (KV buckets included) at the end, and the replicas each has. */
  streams: readonly { name: string; replicas: number }[];
  expectedReplicas: number;
  /** Hostile messages injected and those that reached DEADLETTER; absent when none was sent. */
  deadLetters?: { sent: number; deadLettered: number };
}

export interface Row {
  check: string;
  expected: string;
  observed: string;
  ok: boolean;
}

/** Largest allowed relative difference of a request's energy from the reference's (the issue: 2 %). */
export const ENERGY_TOLERANCE = 0.02;
/** Σ attributed + idle = measured, per window and over the run, relatively. */
export const CONSERVATION_TOLERANCE = 1e-6;

export function verdict(o: Observation): Row[] {
  const n = o.loadResults.length;
  const rows: Row[] = [];
  const missing = (run: StoredRun) => o.loadResults.filter((id) => !run.requests.has(id)).length;
  const extra = (run: StoredRun) => [...run.requests.keys()].filter((id) => !o.loadResults.includes(id)).length;
  const fMissing = missing(o.faulted);
  const fExtra = extra(o.faulted);
  rows.push({
    check: "requests stored",
    expected: `${n} (the load generator's), reference ${n}`,
    observed: `${o.faulted.requests.size}${fMissing ? `, ${fMissing} missing` : ""}${fExtra ? `, ${fExtra} unknown` : ""}, reference ${o.reference.requests.size}${missing(o.reference) ? ` (${missing(o.reference)} missing)` : ""}`,
    ok: n > 0 && fMissing === 0 && fExtra === 0 && missing(o.reference) === 0 && extra(o.reference) === 0,
  });
  const joined = (run: StoredRun) => o.loadResults.filter((id) => run.requests.get(id)?.joined).length;
  rows.push({ check: "LOAD joins", expected: `${n}, reference ${n}`, observed: `${joined(o.faulted)}, reference ${joined(o.reference)}`, ok: joined(o.faulted) === n && joined(o.reference) === n });

  let worst = 0;
  let worstId = "";
  for (const [id, ref] of o.reference.requests) {
    const got = o.faulted.requests.get(id);
    if (!got) continue; // counted above
    const dev = relDiff(got.energyJ, ref.energyJ);
    if (dev > worst) [worst, worstId] = [dev, id];
  }
  rows.push({ check: "energy per request vs reference", expected: `≤ ${pct(ENERGY_TOLERANCE)}`, observed: `worst ${pct(worst)}${worstId ? ` (${worstId})` : ""}`, ok: worst <= ENERGY_TOLERANCE });

  // The reference reads the same streams, so a message the agent lost is missing from both: it
  // shows as a window that closed incomplete (POWER or WORK missing) or not at all (a gap).
  const f = totals(o.faulted);
  const r = totals(o.reference);
  rows.push({
    check: "node windows, measured energy",
    expected: `${r.windows}, 0 incomplete, 0 gaps; ${r.measuredJ.toFixed(3)} J`,
    observed: `${f.windows}, ${f.incomplete} incomplete, ${f.gaps} gaps; ${f.measuredJ.toFixed(3)} J${r.incomplete || r.gaps ? ` (reference: ${r.incomplete} incomplete, ${r.gaps} gaps)` : ""}`,
    ok: f.windows === r.windows && f.incomplete === 0 && f.gaps === 0 && r.incomplete === 0 && r.gaps === 0 && relDiff(f.measuredJ, r.measuredJ) <= CONSERVATION_TOLERANCE,
  });
  const cons = Math.max(conservation(o.faulted), conservation(o.reference));
  rows.push({ check: "conservation error", expected: `≤ ${CONSERVATION_TOLERANCE.toExponential(0)}`, observed: cons.toExponential(1), ok: cons <= CONSERVATION_TOLERANCE });

  rows.push({ check: "unpublished (agent, loadgen)", expected: "0, 0", observed: `${o.unpublished.agent}, ${o.unpublished.load}`, ok: o.unpublished.agent === 0 && o.unpublished.load === 0 });
  if (o.deadLetters) {
    rows.push({ check: "hostile messages dead-lettered", expected: String(o.deadLetters.sent), observed: String(o.deadLetters.deadLettered), ok: o.deadLetters.deadLettered === o.deadLetters.sent });
  }
  const short = o.streams.filter((s) => s.replicas !== o.expectedReplicas);
  rows.push({
    check: `streams and buckets R${o.expectedReplicas}`,
    expected: `${o.streams.length} of ${o.streams.length}`,
    observed: `${o.streams.length - short.length} of ${o.streams.length}${short.length ? ` (${short.map((s) => `${s.name} R${s.replicas}`).join(", ")})` : ""}`,
    ok: o.streams.length > 0 && short.length === 0,
  });
  rows.push({ check: "processes crashed", expected: "0", observed: o.crashes.length ? `${o.crashes.length}: ${o.crashes.join("; ")}` : "0", ok: o.crashes.length === 0 });
  return rows;
}

/**
 * The worst relative conservation error of a run: each window's |measured − attributed − idle|,
 * and over the run |Σ requests' energy − Σ windows' attributed| (every request's shares of every
 * window it worked in add up to what the windows attributed).
 */
export function conservation(run: StoredRun): number {
  let worst = 0;
  for (const w of run.windows) worst = Math.max(worst, Math.abs(w.measuredJ - w.attributedJ - w.idleJ) / Math.max(w.measuredJ, 1e-9));
  const attributed = run.windows.reduce((s, w) => s + w.attributedJ, 0);
  const requests = [...run.requests.values()].reduce((s, r) => s + r.energyJ, 0);
  if (attributed > 0) worst = Math.max(worst, Math.abs(requests - attributed) / attributed);
  return worst;
}

function totals(run: StoredRun) {
  return { windows: run.windows.length, incomplete: run.windows.filter((w) => w.incomplete).length, gaps: gaps(run.windows), measuredJ: run.windows.reduce((s, w) => s + w.measuredJ, 0) };
}

/** Windows missing between the first and the last (one node; the window length is the smallest step). */
export function gaps(windows: readonly StoredWindow[]): number {
  const starts = [...new Set(windows.map((w) => w.startMs))].sort((a, b) => a - b);
  if (starts.length < 3) return 0;
  let step = Infinity;
  for (let i = 1; i < starts.length; i++) step = Math.min(step, starts[i]! - starts[i - 1]!);
  return Math.round((starts.at(-1)! - starts[0]!) / step) + 1 - starts.length;
}

function relDiff(a: number, b: number): number {
  if (a === b) return 0;
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-9);
}

const pct = (x: number) => `${(x * 100).toFixed(x > 0 && x < 0.001 ? 4 : 2)} %`;

/** What an analyzer stored in `influx`'s database: every request_energy row and node_energy window. */
export async function readStored(influx: InfluxTarget): Promise<StoredRun> {
  const req = await influxQuery(influx, "SELECT request_id, energy_j, slo_met FROM request_energy");
  const requests = new Map<string, StoredRequest>();
  for (const s of req) for (const r of s.rows) requests.set(String(r.request_id), { energyJ: Number(r.energy_j), joined: r.slo_met !== null && r.slo_met !== undefined });
  const ne = await influxQuery(influx, "SELECT measured_j, attributed_j, idle_j, incomplete FROM node_energy");
  const windows = (ne[0]?.rows ?? []).map((r) => ({ startMs: Number(r.time), measuredJ: Number(r.measured_j), attributedJ: Number(r.attributed_j), idleJ: Number(r.idle_j), incomplete: r.incomplete === true }));
  return { requests, windows };
}
