import { Point } from "@influxdata/influxdb-client";
import { mjToJ, mwToW, type RequestEnergy } from "../../shared/mod.ts";
import type { InstanceWindowResult, NodeWindowResult } from "./join.ts";

/**
 * The InfluxDB schema, built for InfluxQL dashboards. Tags are low-cardinality dimensions (node,
 * gpu, instance, model, workload class, run); ids are fields, never tags. Every point's time and
 * tags are a pure function of its input, so a replay overwrites instead of duplicating.
 *
 *   gpu_power        node, gpu, uuid            power_w, energy_mj (counter), sm_clock_mhz, mem_clock_mhz, util_pct, temp_c   (per sample)
 *   gpu_energy       node, gpu                  energy_j, resets, method                                                   (per window)
 *   node_energy      node                       measured_j, attributed_j, idle_j, unassigned_j, incomplete                 (per window)
 *   instance_energy  node, instance, model      energy_j, attributed_j, idle_j, prefill_tokens, decode_tokens, tokens_per_s, j_per_token, active_requests, in_flight, incomplete
 *   request_energy   node, instance, model, workload_class, status, run_id
 *                                               request_id, energy_j, prefill_j, decode_j, idle_share_j, prompt_tokens, output_tokens,
 *                                               j_per_output_token, j_per_token, duration_ms, windows, incomplete     (at the request's start)
 */
export const MEASUREMENTS = ["gpu_power", "gpu_energy", "node_energy", "instance_energy", "request_energy"] as const;

/** Nanosecond timestamp string of an epoch-ms time, plus `extraNs` (< 1e6) to keep points distinct. */
export function nsTime(ms: number, extraNs = 0): string {
  const us = BigInt(Math.round(ms * 1000));
  return (us * 1000n + BigInt(extraNs % 1000)).toString();
}

/** Stable small hash (FNV-1a) of a request id: spreads requests starting in the same µs. */
export function idHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export function nodeWindowPoints(w: NodeWindowResult): Point[] {
  const pts: Point[] = [
    new Point("node_energy")
      .tag("node", w.node)
      .floatField("measured_j", mjToJ(w.measuredMj))
      .floatField("attributed_j", mjToJ(w.attributedMj))
      .floatField("idle_j", mjToJ(w.idleMj))
      .floatField("unassigned_j", mjToJ(w.unassignedMj))
      .booleanField("incomplete", w.incomplete)
      .timestamp(nsTime(w.windowStartMs)),
  ];
  for (const g of w.gpus) {
    pts.push(
      new Point("gpu_energy")
        .tag("node", w.node)
        .tag("gpu", String(g.gpu))
        .floatField("energy_j", mjToJ(g.energyMj))
        .intField("resets", g.resets)
        .stringField("method", g.method)
        .timestamp(nsTime(w.windowStartMs)),
    );
  }
  for (const g of w.power?.gpus ?? []) {
    for (let i = 0; i < g.tMs.length; i++) {
      const p = new Point("gpu_power").tag("node", w.node).tag("gpu", String(g.gpu)).tag("uuid", g.uuid).floatField("power_w", mwToW(g.powerMw[i]!));
      if (g.energyMj) p.floatField("energy_mj", g.energyMj[i]!);
      if (g.smClockMhz) p.floatField("sm_clock_mhz", g.smClockMhz[i]!);
      if (g.memClockMhz) p.floatField("mem_clock_mhz", g.memClockMhz[i]!);
      if (g.utilPct) p.floatField("util_pct", g.utilPct[i]!);
      if (g.tempC) p.floatField("temp_c", g.tempC[i]!);
      pts.push(p.timestamp(nsTime(g.tMs[i]!)));
    }
  }
  return pts;
}

export function instanceWindowPoint(w: InstanceWindowResult): Point {
  const tokens = w.prefillTokens + w.decodeTokens;
  const secs = (w.windowEndMs - w.windowStartMs) / 1000;
  const p = new Point("instance_energy")
    .tag("node", w.node)
    .tag("instance", w.instance)
    .tag("model", w.model ?? "unknown")
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

export function requestPoint(r: RequestEnergy): Point {
  const j = mjToJ(r.energyMj);
  const p = new Point("request_energy")
    .tag("node", r.node)
    .tag("instance", r.instance)
    .tag("model", r.model ?? "unknown")
    .tag("workload_class", r.workloadClass ?? "none")
    .tag("status", r.status)
    .tag("run_id", r.runId ?? "none")
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
  if (r.outputTokens > 0) p.floatField("j_per_output_token", j / r.outputTokens);
  if (r.promptTokens + r.outputTokens > 0) p.floatField("j_per_token", j / (r.promptTokens + r.outputTokens));
  if (r.config.smClockMhz !== undefined) p.tag("sm_clock_mhz", String(r.config.smClockMhz));
  return p.timestamp(nsTime(r.startMs, idHash(r.requestId)));
}
