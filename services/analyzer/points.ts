import { Line } from "./line-protocol.ts";
import { gco2Of, intensityAt, mjToJ, mwToW, type CarbonSeries, type GpuSamples, type RequestEnergy } from "../../shared/mod.ts";
import type { InstanceWindowResult, NodeWindowResult } from "./join.ts";
import type { JoinedRequest } from "./load-join.ts";

/**
 * The InfluxDB schema, built for InfluxQL dashboards. Tags are low-cardinality dimensions (node,
 * gpu, instance, model, workload class, run); ids are fields, never tags. Every point's time and
 * tags are a pure function of its input, so a replay overwrites instead of duplicating.
 *
 *   gpu_energy       node, gpu                  energy_j, resets, method, and of the window's samples: power_w (mean), power_max_w,
 *                                               sm_clock_mhz, mem_clock_mhz, util_pct (means), temp_c (max), energy_mj (last), samples   (per window)
 *   gpu_power        node, gpu, uuid            power_w, energy_mj (counter), sm_clock_mhz, mem_clock_mhz, util_pct, temp_c
 *                                               (per 10 Hz sample; only with --raw-samples: a fleet of 10,000 GPUs makes 100,000 a second)
 *   node_energy      node                       measured_j, attributed_j, idle_j, unassigned_j, incomplete                 (per window)
 *   instance_energy  node, instance, model      energy_j, attributed_j, idle_j, prefill_tokens, decode_tokens, tokens_per_s, j_per_token, active_requests, in_flight, incomplete
 *   request_energy   node, instance, model, workload_class, status, run_id
 *                                               request_id, energy_j, prefill_j, decode_j, idle_share_j, static_j + active_j (= energy_j; with
 *                                               --static-power-w), prompt_tokens, output_tokens,
 *                                               j_per_output_token, j_per_token, duration_ms, windows, incomplete     (at the request's start)
 *                                               + ttft_ms, tpot_ms, e2e_ms, slo_met once the load generator's result is joined
 *   agent_stats      node                       queued, published, dropped, spilled, sample_errors, skipped_ticks, jitter_p99_ms  (per window)
 *   analyzer_stats   analyzer, replica          received, dead_lettered, acked, reacked, pending, requests_emitted, windows_closed, sink_retries, lag_ms (every 10 s)
 */
export const MEASUREMENTS = ["gpu_power", "gpu_energy", "node_energy", "instance_energy", "request_energy", "agent_stats", "analyzer_stats"] as const;

/**
 * A tag value as line protocol can carry it: the client escapes commas, spaces and '=' but not a
 * trailing backslash, which then escapes the separator after it and InfluxDB refuses the whole batch
 * (labels like the workload class come from any API client's headers). Long values are cut: series
 * keys over 64 KiB are refused too.
 */
export const MAX_TAG_CHARS = 256;
export function tagValue(v: string): string {
  return v.slice(0, MAX_TAG_CHARS).replace(/\\+$/, (m) => "/".repeat(m.length));
}

/** Nanosecond timestamp string of an epoch-ms time, plus `extraNs` (< 1e6) to keep points distinct. */
export function nsTime(ms: number, extraNs = 0): string {
  const us = Math.round(ms * 1000);
  const extra = extraNs % 1000;
  // Without BigInt where doubles are exact (today's epochs: ~1.7e15 µs < 2^53): the µs digits, then
  // the three of the extra ns. BigInt cost three allocations per point.
  if (us >= 1 && us <= Number.MAX_SAFE_INTEGER && extra >= 0 && Number.isInteger(extra)) return String(us) + (extra < 10 ? "00" : extra < 100 ? "0" : "") + String(extra);
  return (BigInt(us) * 1000n + BigInt(extra)).toString();
}

/** Stable small hash (FNV-1a) of a request id: spreads requests starting in the same µs. */
export function idHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export interface NodeWindowPointOptions {
  /** Every sample as its own gpu_power point (10 Hz per GPU); default one aggregate per GPU and window. */
  rawSamples?: boolean;
}

export function nodeWindowPoints(w: NodeWindowResult, opts: NodeWindowPointOptions = {}): Line[] {
  const time = nsTime(w.windowStartMs);
  const pts: Line[] = [
    new Line("node_energy")
      .tag("node", w.node)
      .floatField("measured_j", mjToJ(w.measuredMj))
      .floatField("attributed_j", mjToJ(w.attributedMj))
      .floatField("idle_j", mjToJ(w.idleMj))
      .floatField("unassigned_j", mjToJ(w.unassignedMj))
      .booleanField("incomplete", w.incomplete)
      .timestamp(time),
  ];
  const cpu = w.power?.cpu;
  if (cpu) pts[0]!.floatField("cpu_j", mjToJ(cpu.energyEndMj - cpu.energyStartMj));
  const a = w.power?.agent;
  if (a) {
    const p = new Line("agent_stats")
      .tag("node", w.node)
      .intField("queued", a.queued)
      .intField("published", a.published)
      .intField("dropped", a.dropped)
      .intField("spilled", a.spilled)
      .intField("sample_errors", a.sampleErrors)
      .intField("skipped_ticks", a.skippedTicks);
    if (a.sampleP99Ms !== undefined) p.floatField("sample_p99_ms", a.sampleP99Ms);
    if (a.missingGpus !== undefined) p.intField("missing_gpus", a.missingGpus.length);
    if (w.power?.jitterP99Ms !== undefined) p.floatField("jitter_p99_ms", w.power.jitterP99Ms);
    pts.push(p.timestamp(time));
  }
  const samples = new Map((w.power?.gpus ?? []).map((g) => [g.gpu, g]));
  for (const g of w.gpus) {
    const p = new Line("gpu_energy").tag("node", w.node).tag("gpu", String(g.gpu)).floatField("energy_j", mjToJ(g.energyMj)).intField("resets", g.resets).stringField("method", g.method);
    const s = samples.get(g.gpu);
    if (s) addSampleAggregates(p, s);
    pts.push(p.timestamp(time));
  }
  if (opts.rawSamples) for (const g of w.power?.gpus ?? []) pts.push(...gpuSamplePoints(w.node, g));
  return pts;
}

/** Every sample of a GPU's window as its own gpu_power point (`--raw-samples`). */
function gpuSamplePoints(node: string, g: GpuSamples): Line[] {
  const pts: Line[] = [];
  for (let i = 0; i < g.tMs.length; i++) {
    const p = new Line("gpu_power").tag("node", node).tag("gpu", String(g.gpu)).tag("uuid", tagValue(g.uuid)).floatField("power_w", mwToW(g.powerMw[i]!));
    if (g.energyMj) p.floatField("energy_mj", g.energyMj[i]!);
    if (g.smClockMhz) p.floatField("sm_clock_mhz", g.smClockMhz[i]!);
    if (g.memClockMhz) p.floatField("mem_clock_mhz", g.memClockMhz[i]!);
    if (g.utilPct) p.floatField("util_pct", g.utilPct[i]!);
    if (g.tempC) p.floatField("temp_c", g.tempC[i]!);
    pts.push(p.timestamp(nsTime(g.tMs[i]!)));
  }
  return pts;
}

const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
const max = (xs: readonly number[]) => xs.reduce((m, x) => (x > m ? x : m), Number.NEGATIVE_INFINITY);

/**
 * A GPU's samples over a window, as fields of its gpu_energy point: the means of power, clocks and
 * utilization, the maximum power and temperature, the last counter reading and the sample count.
 * Means of windows with equal sample counts average to the mean of the samples, so dashboards read
 * the same power from these as from raw samples, at a tenth of the points.
 */
function addSampleAggregates(p: Line, g: GpuSamples): void {
  if (g.tMs.length === 0) return;
  p.floatField("power_w", mwToW(mean(g.powerMw))).floatField("power_max_w", mwToW(max(g.powerMw))).intField("samples", g.tMs.length);
  if (g.energyMj) p.floatField("energy_mj", g.energyMj[g.energyMj.length - 1]!);
  if (g.smClockMhz) p.floatField("sm_clock_mhz", mean(g.smClockMhz));
  if (g.memClockMhz) p.floatField("mem_clock_mhz", mean(g.memClockMhz));
  if (g.utilPct) p.floatField("util_pct", mean(g.utilPct));
  if (g.tempC) p.floatField("temp_c", max(g.tempC));
}

export function instanceWindowPoint(w: InstanceWindowResult): Line {
  const secs = (w.windowEndMs - w.windowStartMs) / 1000;
  const p = new Line("instance_energy")
    .tag("node", w.node)
    .tag("instance", w.instance)
    .tag("model", tagValue(w.model ?? "unknown"))
    .floatField("energy_j", mjToJ(w.energyMj))
    .floatField("attributed_j", mjToJ(w.attributedMj))
    .floatField("idle_j", mjToJ(w.idleMj))
    .intField("prefill_tokens", w.prefillTokens)
    .intField("decode_tokens", w.decodeTokens)
    .floatField("tokens_per_s", secs > 0 ? w.decodeTokens / secs : 0)
    .intField("active_requests", w.activeRequests)
    .intField("in_flight", w.inFlight)
    .booleanField("incomplete", w.incomplete);
  if (w.decodeTokens > 0) p.floatField("j_per_token", mjToJ(w.attributedMj) / w.decodeTokens);
  return p.timestamp(nsTime(w.windowStartMs));
}

/** The request_energy series and time of a request: a second write with more fields merges into it. */
function requestBase(r: RequestEnergy): Line {
  return new Line("request_energy")
    .tag("node", r.node)
    .tag("instance", r.instance)
    .tag("model", tagValue(r.model ?? "unknown"))
    .tag("workload_class", tagValue(r.workloadClass ?? "none"))
    .tag("status", r.status)
    .tag("run_id", tagValue(r.runId ?? "none"))
    .timestamp(nsTime(r.startMs, idHash(r.requestId)));
}

export function requestPoint(r: RequestEnergy, carbon?: CarbonSeries): Line {
  const j = mjToJ(r.energyMj);
  const p = requestBase(r)
    .stringField("request_id", r.requestId)
    .floatField("energy_j", j)
    .floatField("prefill_j", mjToJ(r.prefillEnergyMj))
    .floatField("decode_j", mjToJ(r.decodeEnergyMj))
    .floatField("idle_share_j", mjToJ(r.idleShareMj))
    .intField("prompt_tokens", r.promptTokens)
    .intField("output_tokens", r.outputTokens)
    .floatField("duration_ms", r.endMs - r.startMs)
    .intField("windows", r.windows)
    .booleanField("incomplete", r.incomplete);
  if (r.staticEnergyMj !== undefined) p.floatField("static_j", mjToJ(r.staticEnergyMj));
  if (r.activeEnergyMj !== undefined) p.floatField("active_j", mjToJ(r.activeEnergyMj));
  if (r.outputTokens > 0) p.floatField("j_per_output_token", j / r.outputTokens);
  if (r.promptTokens + r.outputTokens > 0) p.floatField("j_per_token", j / (r.promptTokens + r.outputTokens));
  // Emissions at the grid's intensity when the request started (none outside the series).
  const g = carbon ? intensityAt(carbon, r.startMs) : undefined;
  if (g !== undefined) p.floatField("gco2", gco2Of(j, g)).floatField("grid_gco2_per_kwh", g);
  return p;
}

/** Client-side latency and SLO attainment, merged into the request's energy point. */
export function requestLoadPoint(j: JoinedRequest): Line {
  const p = requestBase(j.energy).booleanField("slo_met", j.sloMet).floatField("lag_ms", Math.max(0, j.load.sentMs - j.load.scheduledMs));
  if (j.load.ttftMs !== undefined) p.floatField("ttft_ms", j.load.ttftMs);
  if (j.load.tpotMs !== undefined) p.floatField("tpot_ms", j.load.tpotMs);
  if (j.load.e2eMs !== undefined) p.floatField("e2e_ms", j.load.e2eMs);
  return p;
}

export interface AnalyzerStatsFields {
  received: number;
  deadLettered: number;
  acked: number;
  /** Acknowledgements sent a second time (the ack floor had not passed them 10 s later). */
  reacked: number;
  pending: number;
  requestsEmitted: number;
  windowsClosed: number;
  sinkRetries: number;
  /** Points InfluxDB refused for good (or that could not be built), dropped. */
  pointsRejected: number;
  lagMs: number;
}

/**
 * `replica` tells apart the replicas of one analyzer group (they share `--name`): their counters
 * run since each one's start, and in one series they would interleave (a sawtooth whose
 * non_negative_difference reads as bursts of retries and refused points).
 */
export function analyzerStatsPoint(name: string, tMs: number, s: AnalyzerStatsFields, replica?: string): Line {
  const p = new Line("analyzer_stats").tag("analyzer", name);
  if (replica !== undefined) p.tag("replica", tagValue(replica));
  return p
    .intField("received", s.received)
    .intField("dead_lettered", s.deadLettered)
    .intField("acked", s.acked)
    .intField("reacked", s.reacked)
    .intField("pending", s.pending)
    .intField("requests_emitted", s.requestsEmitted)
    .intField("windows_closed", s.windowsClosed)
    .intField("sink_retries", s.sinkRetries)
    .intField("points_rejected", s.pointsRejected)
    .floatField("lag_ms", s.lagMs)
    .timestamp(nsTime(tMs));
}
