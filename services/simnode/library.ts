import { createSimNode, type Knobs, type NodeConfig, type SimNode } from "./node.ts";
import { errorMessage } from "../../shared/errors.ts";
import { createEnergyLedger, type LedgerSnapshot } from "./ledger.ts";

/**
 * Library mode: a workload and a node configuration in, per-request timings and the per-GPU
 * power/energy timeline out, as fast as the engine can step (no clocks, no I/O). The real-time
 * server runs the very same engine (node.ts) against the wall clock.
 */
export interface WorkloadRequest {
  id?: string;
  /** Arrival, simulated ms from the start. */
  arrivalMs: number;
  promptTokens: number;
  /** Tokens generated (as with ignore_eos and max_tokens = outputTokens). */
  outputTokens: number;
  /** Pin to an instance (like /i/<id>/v1/...); default least-loaded. */
  instanceId?: string;
}

export interface SimulationOptions extends NodeConfig {
  /** Energy-counter samples every this many ms (0 = none). Default 1000. */
  sampleIntervalMs?: number;
  /** Keep every engine step (start, end, power, tokens). Default false. */
  recordSteps?: boolean;
  /** Keep each request's token times. Default false. */
  recordTokenTimes?: boolean;
  /** Keep simulating (idle) until at least this time, ms. */
  untilMs?: number;
  /** Keep the energy ledger: each request's share of the energy of the steps it ran in (ledger.ts). Default false. */
  ledger?: boolean;
  /** SM clock changes during the run, as a governor would make them (simulated ms, any order). */
  clockSchedule?: readonly { atMs: number; smClockMhz: number }[];
}

export interface RequestTiming {
  id: string;
  instanceId: string;
  arrivalMs: number;
  admitMs: number;
  firstTokenMs: number;
  endMs: number;
  promptTokens: number;
  outputTokens: number;
  ttftMs: number;
  /** Mean inter-token latency, ms (0 for one-token requests). */
  meanItlMs: number;
  tokenTimesMs?: number[];
}

export interface StepRecord {
  instanceId: string;
  startMs: number;
  endMs: number;
  /** Average power of each GPU of the instance, W. */
  powerW: number;
  gpus: number;
  smClockMhz: number;
  decodeSeqs: number;
  prefillTokens: number;
  /** Output tokens emitted at the end of the step. */
  tokens: number;
}

export interface SimulationResult {
  knobs: Knobs;
  model: string;
  gpu: string;
  instances: { id: string; gpus: number[] }[];
  requests: RequestTiming[];
  rejected: { id: string; reason: string }[];
  /** Simulated span, ms (until the last request finished, or untilMs). */
  durationMs: number;
  /** Energy counter of each GPU at the end, mJ. */
  gpuEnergyMj: number[];
  totalEnergyJ: number;
  outputTokens: number;
  /** Energy counters every sampleIntervalMs: tMs[k], energyMj[gpu][k]. */
  samples: { tMs: number[]; energyMj: number[][] };
  steps?: StepRecord[];
  /** The engine's own per-request energy (with `ledger: true`), at `durationMs`. */
  ledger?: LedgerSnapshot;
}

export function simulate(workload: readonly WorkloadRequest[], opts: SimulationOptions = {}): SimulationResult {
  const node: SimNode = createSimNode(opts);
  const interval = opts.sampleIntervalMs ?? 1000;
  const order = workload.map((_, i) => i).sort((a, b) => workload[a]!.arrivalMs - workload[b]!.arrivalMs || a - b);
  const timings: (RequestTiming | undefined)[] = new Array(workload.length);
  const rejected: { id: string; reason: string }[] = [];
  const steps: StepRecord[] | undefined = opts.recordSteps ? [] : undefined;
  const samples = { tMs: [] as number[], energyMj: Array.from({ length: node.gpuCount }, () => [] as number[]) };
  let outputTokens = 0;
  const ledger = opts.ledger ? createEnergyLedger(node, { maxRequests: Infinity }) : undefined;

  node.onStep((inst, step) => {
    for (const s of step.emitted) {
      const t = timings[s.req.tag as number]!;
      t.tokenTimesMs?.push(step.endMs);
      if (s.generated === 1) {
        t.admitMs = s.admitMs;
        t.firstTokenMs = step.endMs;
        t.ttftMs = step.endMs - t.arrivalMs;
      }
    }
    for (const s of step.finished) {
      const t = timings[s.req.tag as number]!;
      t.endMs = step.endMs;
      t.meanItlMs = s.generated > 1 ? (step.endMs - t.firstTokenMs) / (s.generated - 1) : 0;
    }
    outputTokens += step.emitted.length;
    steps?.push({ instanceId: inst.id, startMs: step.startMs, endMs: step.endMs, powerW: step.cost.powerW, gpus: inst.gpus.length, smClockMhz: step.cost.smClockMhz, decodeSeqs: step.work.decodeSeqs, prefillTokens: step.work.prefillTokens, tokens: step.emitted.length });
  });

  let nextSample = interval > 0 ? 0 : Infinity;
  const schedule = [...(opts.clockSchedule ?? [])].sort((a, b) => a.atMs - b.atMs);
  let nextChange = 0;
  const advance = (tMs: number) => {
    while (nextChange < schedule.length && schedule[nextChange]!.atMs <= tMs) {
      const c = schedule[nextChange++]!;
      advanceSampled(c.atMs);
      node.setKnobs({ smClockMhz: c.smClockMhz }, c.atMs);
    }
    advanceSampled(tMs);
  };
  const advanceSampled = (tMs: number) => {
    while (nextSample <= tMs) {
      node.advanceTo(nextSample);
      samples.tMs.push(nextSample);
      for (let g = 0; g < node.gpuCount; g++) samples.energyMj[g]!.push(node.energyMj(g, nextSample));
      nextSample += interval;
    }
    node.advanceTo(tMs);
  };

  for (const i of order) {
    const w = workload[i]!;
    const id = w.id ?? `r${i}`;
    advance(w.arrivalMs);
    try {
      const { instance } = node.submit({ id, promptTokens: w.promptTokens, outputTokens: w.outputTokens, tag: i }, w.arrivalMs, w.instanceId);
      timings[i] = { id, instanceId: instance.id, arrivalMs: w.arrivalMs, admitMs: NaN, firstTokenMs: NaN, endMs: NaN, promptTokens: w.promptTokens, outputTokens: w.outputTokens, ttftMs: NaN, meanItlMs: NaN, ...(opts.recordTokenTimes ? { tokenTimesMs: [] } : {}) };
    } catch (err) {
      rejected.push({ id, reason: errorMessage(err) });
    }
  }
  for (let next = node.nextEventMs(); next !== undefined; next = node.nextEventMs()) advance(next);
  let endMs = 0;
  for (const t of timings) if (t && t.endMs > endMs) endMs = t.endMs;
  const durationMs = Math.max(endMs, opts.untilMs ?? 0);
  advance(durationMs);

  const gpuEnergyMj = Array.from({ length: node.gpuCount }, (_, g) => node.energyMj(g, durationMs));
  return {
    knobs: node.knobs(),
    model: node.model.id,
    gpu: node.gpu.id,
    instances: node.instances.map((i) => ({ id: i.id, gpus: [...i.gpus] })),
    requests: timings.filter((t): t is RequestTiming => t !== undefined),
    rejected,
    durationMs,
    gpuEnergyMj,
    totalEnergyJ: gpuEnergyMj.reduce((a, b) => a + b, 0) / 1000,
    outputTokens,
    samples,
    ...(steps ? { steps } : {}),
    ...(ledger ? { ledger: ledger.snapshot(durationMs) } : {}),
  };
}
