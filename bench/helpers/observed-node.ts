import { powerMessage, workMessage, type GpuSamples, type PowerBatch, type RequestEvent, type WorkWindow } from "../../shared/mod.ts";
import type { SimulationResult } from "../../services/simnode/mod.ts";

/**
 * What an agent on a simulated node would publish, built from a library-mode run and from nothing
 * a real node could not observe: the GPUs' energy counters read every `sampleIntervalMs` (the
 * sampler's 10 Hz), cut into 1-s windows on the epoch grid; and each request as the request tap
 * sees it on the wire — its arrival, the time of each streamed token, its prompt and output token
 * counts from usage. WORK follows the tap's rule (request-watcher.ts): the prompt's tokens count as
 * prefill in the window of the first token, each later token as one decode token in its window.
 * Never the engine's steps, batches or per-step work: those are the ledger's, not the agent's.
 */
export interface ObservedNode {
  power: PowerBatch[];
  work: WorkWindow[];
  events: RequestEvent[];
}

/** Epoch ms of simulated t = 0: a whole second, so simulated and epoch windows share their edges. */
export const SIM_EPOCH_MS = 1_700_000_000_000;

export function observe(r: SimulationResult, o: { node: string; windowMs?: number; model?: string }): ObservedNode {
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

  // WORK per instance and window, and REQUEST events, from the tap's view of each request.
  type Acc = Map<string, { prefill: number; decode: number }>;
  const work = new Map<string, Acc[]>(instanceIds.map((id) => [id, Array.from({ length: windows }, () => new Map())]));
  const inFlightAt = new Map<string, number[]>(instanceIds.map((id) => [id, new Array<number>(windows).fill(0)]));
  const events: RequestEvent[] = [];
  const windowOf = (simMs: number) => Math.min(windows - 1, Math.max(0, Math.ceil(simMs / windowMs) - 1));
  for (const q of r.requests) {
    const times = q.tokenTimesMs;
    if (!times || times.length === 0) throw new Error("observe: the run needs token times (recordTokenTimes)");
    const accs = work.get(q.instanceId)!;
    const add = (simMs: number, prefill: number, decode: number) => {
      const m = accs[windowOf(simMs)]!;
      const e = m.get(q.id) ?? { prefill: 0, decode: 0 };
      e.prefill += prefill;
      e.decode += decode;
      m.set(q.id, e);
    };
    add(times[0]!, q.promptTokens, 0);
    for (let k = 1; k < times.length; k++) add(times[k]!, 0, 1);
    // In flight at a window's end: arrived at or before it, not yet ended.
    const inFlight = inFlightAt.get(q.instanceId)!;
    for (let k = windowOf(q.arrivalMs); k < windows && (k + 1) * windowMs < q.endMs; k++) inFlight[k]!++;
    const base = { v: 1 as const, kind: "request" as const, node, instance: q.instanceId, requestId: q.id };
    events.push({ ...base, msgId: `${node}:req:${q.id}:start`, event: "start", tMs: at(q.arrivalMs), endpoint: "completions", stream: true, ...(o.model ? { model: o.model } : {}) });
    events.push({ ...base, msgId: `${node}:req:${q.id}:first`, event: "first_token", tMs: at(times[0]!) });
    events.push({ ...base, msgId: `${node}:req:${q.id}:end`, event: "end", tMs: at(q.endMs), status: "ok", httpStatus: 200, promptTokens: q.promptTokens, outputTokens: q.outputTokens });
  }
  const out: WorkWindow[] = [];
  for (const inst of r.instances) {
    const accs = work.get(inst.id)!;
    const inFlight = inFlightAt.get(inst.id)!;
    for (let k = 0; k < windows; k++) {
      out.push(
        workMessage({
          node,
          instance: inst.id,
          gpus: inst.gpus,
          ...(o.model ? { model: o.model } : {}),
          windowStartMs: at(k * windowMs),
          windowEndMs: at((k + 1) * windowMs),
          requests: [...accs[k]!].map(([requestId, w]) => ({ requestId, prefillTokens: w.prefill, decodeTokens: w.decode })),
          inFlight: inFlight[k]!,
        }),
      );
    }
  }
  return { power, work: out, events };
}
