import { energyMjOf, powerMessage, workMessage, wToMw, type GpuSamples, type PowerBatch, type RequestEvent, type WorkWindow } from "../../shared/mod.ts";
import { CLASSES, INPUT_RANGES, OUTPUT_RANGES, type Length, type WorkloadClass } from "../../shared/workload-classes.ts";
import { createRng, hash32, type Rng } from "../../shared/rng.ts";

/**
 * One emulated GPU node at protocol level: what its agent would publish, window by window, with
 * no HTTP, no sampler timers and no clock. Pure and deterministic: the same options and the same
 * sequence of `step(windowStartMs)` calls give the same messages, bit for bit.
 *
 * Activity model (plausible, not calibrated — the simulated node `simnode` is the calibrated one):
 * - each instance (TP GPUs) gets Poisson arrivals at `ratePerInstanceS`; prompt and output lengths
 *   are drawn uniformly from the ranges of a workload class of the paper (PAPER.md), itself drawn
 *   uniformly from `classes`;
 * - all prompt tokens are prefilled in the window of arrival; the first token comes after
 *   TTFT_BASE_MS + prompt × TTFT_MS_PER_PROMPT_TOKEN, then decode runs at 1000 / ITL(batch) tokens/s
 *   (continuous batching: the inter-token latency grows with the batch, no queueing);
 * - the power of an instance's GPUs follows its batch and prefill work; the energy counter (integer
 *   mJ, as NVML's) advances by exactly the interval's power × time, so counter and power agree.
 *
 * Sample k of a window is taken at windowStart + k × sampleMs and reports the average power of the
 * interval before it (like the agent's sampler: samples at [start, end), the counter reading that
 * closed the previous window as `energyStartMj`). WORK counts the tokens of [start, end).
 */
export interface NodeModelOptions {
  node: string;
  gpus?: number;
  /** GPUs per instance; instances = ⌊gpus / tp⌋, the rest of the GPUs idle and unassigned. */
  tp?: number;
  /** Mean request arrivals per second per instance (Poisson). 0 = idle node. */
  ratePerInstanceS?: number;
  seed?: number;
  sampleMs?: number;
  windowMs?: number;
  model?: string;
  classes?: readonly WorkloadClass[];
  runId?: string;
}

export interface NodeWindow {
  power: PowerBatch;
  work: WorkWindow[];
  /** Request events with tMs in the window, in time order. */
  events: RequestEvent[];
}

export interface NodeModel {
  readonly node: string;
  readonly instances: readonly { id: string; gpus: number[] }[];
  /**
   * Emits the window starting at `windowStartMs` (the next one on the grid after the previous
   * call). `stopArrivalsAtMs`: no request arrives at or after it. `abortAll`: every request still
   * in flight at the window's end ends there, status "aborted" (end of a run).
   */
  step(windowStartMs: number, opts?: { stopArrivalsAtMs?: number; abortAll?: boolean }): NodeWindow;
  inFlight(): number;
}

export const DEFAULT_GPUS = 8;
export const DEFAULT_TP = 4;
export const DEFAULT_RATE_PER_INSTANCE_S = 2;
export const TTFT_BASE_MS = 25;
export const TTFT_MS_PER_PROMPT_TOKEN = 0.03;
/** Inter-token latency of a TP=4 70B-class instance: ITL_BASE_MS + ITL_MS_PER_SEQ × batch. */
export const ITL_BASE_MS = 22;
export const ITL_MS_PER_SEQ = 0.35;
/** H100-class power levels, W. */
export const IDLE_W = 72;
export const ACTIVE_BASE_W = 200;
export const ACTIVE_W_PER_SEQ = 7;
export const PREFILL_W_PER_TOKEN_PER_S = 0.004;
export const MAX_GPU_W = 700;
/** Counters start at a large reading (energy since driver load), as on a real node. */
const COUNTER_ORIGIN_MJ = 5e9;

interface Req {
  id: string;
  prompt: number;
  output: number;
  firstTokenMs: number;
  generated: number;
  /** Fractional decode progress, tokens. */
  frac: number;
}

interface Instance {
  id: string;
  gpus: number[];
  active: Map<string, Req>;
  nextArrivalMs: number;
  seq: number;
}

interface Gpu {
  uuid: string;
  offsetW: number;
  /** Exact energy since the counter's origin, mJ; the reading is its floor. */
  energyMj: number;
  /** Average power of the interval ending at the next sample, mW. */
  pendingMw: number;
  lastReadingMj: number;
  lastTMs?: number;
}

export function createNodeModel(opts: NodeModelOptions): NodeModel {
  const nGpus = opts.gpus ?? DEFAULT_GPUS;
  const tp = opts.tp ?? DEFAULT_TP;
  const sampleMs = opts.sampleMs ?? 100;
  const windowMs = opts.windowMs ?? 1000;
  const rate = opts.ratePerInstanceS ?? DEFAULT_RATE_PER_INSTANCE_S;
  const classes = opts.classes ?? CLASSES;
  const model = opts.model ?? "llama-2-70b";
  if (windowMs % sampleMs !== 0) throw new RangeError(`window ${windowMs} ms must be a multiple of the sample interval ${sampleMs} ms`);
  if (tp < 1 || tp > nGpus) throw new RangeError(`tp ${tp} must be in [1, ${nGpus}]`);
  const rng: Rng = createRng(hash32(`${opts.seed ?? 1}/${opts.node}`));
  const gpus: Gpu[] = Array.from({ length: nGpus }, (_, i) => {
    const e = COUNTER_ORIGIN_MJ * (1 + rng.next());
    return { uuid: `GPU-${(hash32(`${opts.node}/${i}`) >>> 0).toString(16).padStart(8, "0")}-emu`, offsetW: (rng.next() - 0.5) * 20, energyMj: e, pendingMw: wToMw(IDLE_W), lastReadingMj: Math.floor(e) };
  });
  const instances: Instance[] = Array.from({ length: Math.floor(nGpus / tp) }, (_, i) => ({
    id: `i${i}`,
    gpus: Array.from({ length: tp }, (_, g) => i * tp + g),
    active: new Map(),
    nextArrivalMs: Number.NaN,
    seq: 0,
  }));
  const instanceIds = instances.map((i) => i.id);
  let expectedStart: number | undefined;
  let seq = 0;

  /** Roughly normal, mean 0, σ 0.5 (sum of three uniforms): sensor noise, W per unit. */
  const noise = () => rng.next() + rng.next() + rng.next() - 1.5;
  const draw = (range: readonly [number, number]) => rng.int(range[0], range[1]);
  const itlMs = (batch: number) => ITL_BASE_MS + ITL_MS_PER_SEQ * batch;

  const step: NodeModel["step"] = (ws, o = {}) => {
    if (expectedStart !== undefined && ws !== expectedStart) throw new RangeError(`${opts.node}: window ${ws} does not follow ${expectedStart - windowMs}`);
    expectedStart = ws + windowMs;
    const we = ws + windowMs;
    const stopAt = o.stopArrivalsAtMs ?? Number.POSITIVE_INFINITY;
    const events: RequestEvent[] = [];
    const work = instances.map(() => new Map<string, { p: number; d: number }>());
    const cols = gpus.map(() => ({ tMs: [] as number[], powerMw: [] as number[], energyMj: [] as number[], sm: [] as number[], util: [] as number[], temp: [] as number[] }));
    const startReadings = gpus.map((g) => ({ mj: g.lastReadingMj, t: g.lastTMs }));
    const base = (inst: Instance, id: string, tMs: number) => ({ v: 1 as const, kind: "request" as const, node: opts.node, instance: inst.id, requestId: id, tMs });

    for (let t = ws; t < we; t += sampleMs) {
      // 1. The sample at t closes the interval before it.
      for (let i = 0; i < nGpus; i++) {
        const g = gpus[i]!;
        if (g.lastTMs !== undefined) g.energyMj += energyMjOf(g.pendingMw, t - g.lastTMs);
        const reading = Math.floor(g.energyMj);
        const c = cols[i]!;
        c.tMs.push(t);
        c.powerMw.push(Math.round(g.pendingMw));
        c.energyMj.push(reading);
        const busy = g.pendingMw > wToMw(IDLE_W + 20);
        c.sm.push(busy ? 1980 : 1755);
        c.util.push(busy ? Math.min(100, Math.round((g.pendingMw / wToMw(MAX_GPU_W)) * 140)) : 0);
        c.temp.push(Math.round(32 + g.pendingMw / wToMw(20)));
        g.lastReadingMj = reading;
        g.lastTMs = t;
        g.pendingMw = wToMw(IDLE_W + g.offsetW * 0.2);
      }
      // 2. The activity of [t, t + sampleMs), which sets the power of the next sample.
      const t1 = t + sampleMs;
      instances.forEach((inst, ii) => {
        const w = work[ii]!;
        const add = (id: string, p: number, d: number) => {
          const e = w.get(id);
          if (e) {
            e.p += p;
            e.d += d;
          } else w.set(id, { p, d });
        };
        if (Number.isNaN(inst.nextArrivalMs)) inst.nextArrivalMs = rate > 0 ? t + (rng.exp() / rate) * 1000 : Number.POSITIVE_INFINITY;
        let prefillTokens = 0;
        while (inst.nextArrivalMs < t1 && inst.nextArrivalMs < stopAt) {
          const at = inst.nextArrivalMs;
          inst.nextArrivalMs += (rng.exp() / rate) * 1000;
          const cls = classes[rng.int(0, classes.length - 1)]!;
          const [inLen, outLen] = cls.split("-") as [Length, Length];
          const id = `${opts.node}-${inst.id}-${String(inst.seq++).padStart(6, "0")}`;
          const r: Req = { id, prompt: draw(INPUT_RANGES[inLen]), output: draw(OUTPUT_RANGES[outLen]), firstTokenMs: 0, generated: 0, frac: 0 };
          r.firstTokenMs = at + TTFT_BASE_MS + TTFT_MS_PER_PROMPT_TOKEN * r.prompt;
          inst.active.set(id, r);
          prefillTokens += r.prompt;
          add(id, r.prompt, 0);
          events.push({
            ...base(inst, id, at),
            msgId: `${opts.node}:req:${id}:start`,
            event: "start",
            endpoint: "completions",
            stream: true,
            model,
            promptTokensHint: r.prompt,
            maxTokens: r.output,
            workloadClass: cls,
            ...(opts.runId ? { runId: opts.runId } : {}),
          });
        }
        const batch = inst.active.size;
        const tokPerMs = 1 / itlMs(batch);
        for (const r of [...inst.active.values()]) {
          if (r.firstTokenMs >= t1) continue;
          let from = Math.max(t, r.firstTokenMs);
          let d = 0;
          if (r.generated === 0) {
            events.push({ ...base(inst, r.id, r.firstTokenMs), msgId: `${opts.node}:req:${r.id}:first`, event: "first_token" });
            r.generated = 1;
            d = 1;
          }
          r.frac += (t1 - from) * tokPerMs;
          const whole = Math.min(Math.floor(r.frac), r.output - r.generated);
          r.frac -= whole;
          r.generated += whole;
          d += whole;
          if (d > 0) add(r.id, 0, d);
          if (r.generated >= r.output) {
            // Ends where its last token falls in the interval (before t1, so inside this window).
            from = Math.min(t1 - 0.001, t1 - r.frac / tokPerMs);
            inst.active.delete(r.id);
            events.push({ ...base(inst, r.id, Math.max(t, from)), msgId: `${opts.node}:req:${r.id}:end`, event: "end", status: "ok", promptTokens: r.prompt, outputTokens: r.generated });
          }
        }
        const active = inst.active.size;
        const w8 = active > 0 ? ACTIVE_BASE_W + ACTIVE_W_PER_SEQ * Math.min(active, 64) : 0;
        const prefillW = Math.min(200, PREFILL_W_PER_TOKEN_PER_S * (prefillTokens * 1000) / sampleMs / inst.gpus.length);
        for (const gi of inst.gpus) {
          const g = gpus[gi]!;
          const watts = Math.min(MAX_GPU_W, IDLE_W + g.offsetW + (w8 > 0 || prefillW > 0 ? w8 + prefillW + noise() * 4 : noise()));
          g.pendingMw = wToMw(Math.max(IDLE_W * 0.5, watts));
        }
      });
    }
    if (o.abortAll) {
      instances.forEach((inst) => {
        for (const r of inst.active.values()) {
          events.push({ ...base(inst, r.id, we - 0.001), msgId: `${opts.node}:req:${r.id}:end`, event: "end", status: "aborted", promptTokens: r.prompt, outputTokens: r.generated });
        }
        inst.active.clear();
      });
    }
    const gpuSamples: GpuSamples[] = gpus.map((g, i) => {
      const c = cols[i]!;
      const s = startReadings[i]!;
      return {
        gpu: i,
        uuid: g.uuid,
        tMs: c.tMs,
        powerMw: c.powerMw,
        energyMj: c.energyMj,
        energyStartMj: s.t === undefined ? c.energyMj[0]! : s.mj,
        startTMs: s.t ?? c.tMs[0]!,
        smClockMhz: c.sm,
        memClockMhz: c.tMs.map(() => 2619),
        utilPct: c.util,
        tempC: c.temp,
      };
    });
    const power: PowerBatch = powerMessage({
      node: opts.node,
      seq: seq++,
      windowStartMs: ws,
      windowEndMs: we,
      source: "fake",
      gpus: gpuSamples,
      instances: instanceIds,
      jitterP99Ms: 0,
    });
    const workWindows: WorkWindow[] = instances.map((inst, ii) =>
      workMessage({
        node: opts.node,
        instance: inst.id,
        gpus: inst.gpus,
        model,
        windowStartMs: ws,
        windowEndMs: we,
        requests: [...work[ii]!].map(([requestId, x]) => ({ requestId, prefillTokens: x.p, decodeTokens: x.d })),
        inFlight: inst.active.size,
      }),
    );
    events.sort((a, b) => a.tMs - b.tMs);
    return { power, work: workWindows, events };
  };

  return {
    node: opts.node,
    instances: instances.map((i) => ({ id: i.id, gpus: i.gpus })),
    step,
    inFlight: () => instances.reduce((s, i) => s + i.active.size, 0),
  };
}
