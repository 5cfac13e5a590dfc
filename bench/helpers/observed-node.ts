import { createWorkTracker } from "../../services/agent/mod.ts";
import { powerMessage, type GpuSamples, type PowerBatch, type RequestEvent, type WorkWindow } from "../../shared/mod.ts";
import type { SimulationResult } from "../../services/simnode/mod.ts";

/**
 * What an agent on a simulated node would publish, built from a library-mode run and from nothing
 * a real node could not observe: the GPUs' energy counters read every `sampleIntervalMs` (the
 * sampler's 10 Hz), cut into 1-s windows on the epoch grid; and each request as the request tap
 * sees it on the wire — its arrival, the time of each streamed token, its prompt and output token
 * counts from usage. WORK is the agent's work tracker's (work-tracker.ts), fed as the tap feeds it
 * (request-watcher.ts): the prompt's tokens count as prefill in the window of the first token (less
 * what the tracker estimated before it, given a prefill rate), each later token as one decode token.
 * Never the engine's steps, batches or per-step work: those are the ledger's, not the agent's.
 *
 * With `engineScrapeMs`, the agent also scrapes each instance's vLLM gauges that often (engine-
 * metrics.ts): the requests the engine runs and queues at the scrape's time, as the simulated
 * server's /i/<id>/metrics would say then (a request queues from its arrival to its admission, runs
 * from its admission to its end) — sampled counts, not the engine's steps.
 */
export interface ObservedNode {
  power: PowerBatch[];
  work: WorkWindow[];
  events: RequestEvent[];
}

/** Epoch ms of simulated t = 0: a whole second, so simulated and epoch windows share their edges. */
export const SIM_EPOCH_MS = 1_700_000_000_000;

export interface ObserveOptions {
  node: string;
  windowMs?: number;
  model?: string;
  prefillTokensPerS?: number;
  kvCapacityTokens?: number;
  /** Scrape each instance's running/waiting gauges this often, ms (none: no scrapes). */
  engineScrapeMs?: number;
  /** The scrapes' phase against the window grid, ms (a real agent's timer is not on it). Default 37. */
  engineScrapeOffsetMs?: number;
  /** The tracker's engineLagMs. */
  engineLagMs?: number;
  /** The tracker's prefillPositionCost. */
  prefillPositionCost?: { k: number; calibrationPosition: number };
}

export function observe(r: SimulationResult, o: ObserveOptions): ObservedNode {
  const windowMs = o.windowMs ?? 1000;
  const { node } = o;
  const at = (simMs: number) => SIM_EPOCH_MS + simMs;
  const samples = r.samples;
  if (samples.tMs.length < 2) throw new Error("observe: the run needs energy samples (sampleIntervalMs > 0)");
  const power: PowerBatch[] = [];
  const instanceIds = r.instances.map((i) => i.id);
  // Windows (k·windowMs, (k+1)·windowMs]: the samples after the window's start up to its end; the
  // reading at the start closed the window before it (energyStartMj).
  let first = 0;
  let seq = 0;
  for (let ws = 0; ws < r.durationMs; ws += windowMs) {
    const we = ws + windowMs;
    const idx: number[] = [];
    for (let k = first; k < samples.tMs.length && samples.tMs[k]! <= we; k++) if (samples.tMs[k]! > ws) idx.push(k);
    if (idx.length === 0) break;
    const prev = idx[0]! - 1;
    const gpus: GpuSamples[] = samples.energyMj.map((col, g) => {
      const slope = (k: number) => (k <= 0 ? 0 : ((col[k]! - col[k - 1]!) / (samples.tMs[k]! - samples.tMs[k - 1]!)) * 1000);
      return {
        gpu: g,
        uuid: `GPU-sim-${g}`,
        tMs: idx.map((k) => at(samples.tMs[k]!)),
        powerMw: idx.map(slope),
        energyMj: idx.map((k) => col[k]!),
        energyStartMj: col[prev]!,
        startTMs: at(samples.tMs[prev]!),
        startPowerMw: slope(prev),
      };
    });
    power.push(powerMessage({ node, seq: seq++, windowStartMs: at(ws), windowEndMs: at(we), source: "sim", gpus, instances: instanceIds }));
    first = idx[idx.length - 1]! + 1;
  }
  const windows = power.length;

  // WORK per instance and window from the agent's own work tracker, fed what the tap sees of each
  // request in time order; REQUEST events as the tap emits them.
  const tracker = createWorkTracker(node, r.instances.map((i) => ({ id: i.id, upstream: "simulated", gpus: i.gpus, ...(o.model ? { model: o.model } : {}) })), { ...(o.prefillTokensPerS !== undefined ? { prefillTokensPerS: o.prefillTokensPerS } : {}), ...(o.kvCapacityTokens !== undefined ? { kvCapacityTokens: o.kvCapacityTokens } : {}), ...(o.engineLagMs !== undefined ? { engineLagMs: o.engineLagMs } : {}), ...(o.prefillPositionCost ? { prefillPositionCost: o.prefillPositionCost } : {}) });
  /** Tap observations: [sim ms, order at equal times (arrive, scrape, first, token, end), request or instance index, what]. */
  const seen: [number, number, number, "start" | "scrape" | "first" | "token" | "end"][] = [];
  const gauges = r.instances.map((inst) => {
    const mine = r.requests.filter((q) => q.instanceId === inst.id);
    const sorted = (f: (q: (typeof mine)[number]) => number) => mine.map(f).sort((a, b) => a - b);
    return { arrivals: sorted((q) => q.arrivalMs), admits: sorted((q) => q.admitMs), ends: sorted((q) => q.endMs) };
  });
  if (o.engineScrapeMs !== undefined) {
    if (!(o.engineScrapeMs > 0)) throw new RangeError(`engineScrapeMs must be > 0, got ${o.engineScrapeMs}`);
    for (let t = o.engineScrapeOffsetMs ?? 37; t < r.durationMs; t += o.engineScrapeMs) r.instances.forEach((_, i) => seen.push([t, 0.5, i, "scrape"]));
  }
  const events: RequestEvent[] = [];
  r.requests.forEach((q, i) => {
    const times = q.tokenTimesMs;
    if (!times || times.length === 0) throw new Error("observe: the run needs token times (recordTokenTimes)");
    seen.push([q.arrivalMs, 0, i, "start"], [times[0]!, 1, i, "first"]);
    for (let k = 1; k < times.length; k++) seen.push([times[k]!, 2, i, "token"]);
    seen.push([q.endMs, 3, i, "end"]);
    const base = { v: 1 as const, kind: "request" as const, node, instance: q.instanceId, requestId: q.id };
    events.push({ ...base, msgId: `${node}:req:${q.id}:start`, event: "start", tMs: at(q.arrivalMs), endpoint: "completions", stream: true, ...(o.model ? { model: o.model } : {}) });
    events.push({ ...base, msgId: `${node}:req:${q.id}:first`, event: "first_token", tMs: at(times[0]!) });
    events.push({ ...base, msgId: `${node}:req:${q.id}:end`, event: "end", tMs: at(q.endMs), status: "ok", httpStatus: 200, promptTokens: q.promptTokens, outputTokens: q.outputTokens });
  });
  seen.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
  const out: WorkWindow[] = [];
  let e = 0;
  for (let k = 0; k < windows; k++) {
    // A window holds what happened in (start, end]: the samples' convention above.
    const last = k === windows - 1;
    for (; e < seen.length && (last || seen[e]![0] <= (k + 1) * windowMs); e++) {
      const [t, , i, what] = seen[e]!;
      if (what === "scrape") {
        const g = gauges[i]!;
        const admitted = atOrBefore(g.admits, t);
        tracker.engine(r.instances[i]!.id, at(t), { waiting: atOrBefore(g.arrivals, t) - admitted, running: admitted - atOrBefore(g.ends, t) });
        continue;
      }
      const q = r.requests[i]!;
      if (what === "start") tracker.started(q.instanceId, q.id, at(t), q.promptTokens, q.outputTokens);
      else if (what === "first") tracker.prefill(q.instanceId, q.id, q.promptTokens);
      else if (what === "token") tracker.decode(q.instanceId, q.id, 1);
      else tracker.ended(q.instanceId, q.id);
    }
    out.push(...tracker.closeWindow(at(k * windowMs), at((k + 1) * windowMs)));
  }
  return { power, work: out, events };
}

/** How many of the ascending `xs` are ≤ `t`. */
function atOrBefore(xs: readonly number[], t: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
