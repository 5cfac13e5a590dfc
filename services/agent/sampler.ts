import type { Clock, GpuSamples, PowerBatch } from "../../shared/mod.ts";
import type { GpuReading, PowerSource } from "./power-source.ts";

/**
 * Samples a PowerSource on a fixed grid (default 10 Hz) and cuts the samples into windows aligned
 * to multiples of `publishIntervalMs` on the epoch clock (default 1 s), so every node's windows and
 * the request tap's WORK windows share boundaries.
 *
 * Each window carries, per GPU, the last counter reading of the window before (`energyStartMj`):
 * the energy of the window is then counter(last sample) − energyStartMj, and a lost message never
 * shifts energy into a neighbour.
 */
export interface SamplerOptions {
  source: PowerSource;
  clock: Clock;
  node: string;
  /** Instance ids published with each window (see PowerBatch.instances). */
  instances?: string[];
  /** The GPUs the node has (its inventory): one without a sample in a window is reported missing. */
  gpus?: number[];
  sampleIntervalMs?: number;
  publishIntervalMs?: number;
  /** Called for each closed window, in order. Must not throw; must not block (queue inside). */
  onWindow(batch: PowerBatch): void;
  /** Called at each window boundary, before onWindow, so WORK windows close on the same grid. */
  onBoundary?(windowStartMs: number, windowEndMs: number): void;
  onError?(err: unknown): void;
  /** The agent's health figures to carry in each window (see PowerBatch.agent). */
  health?(): { queued: number; published: number; dropped: number; spilled: number };
  /** Whole-node CPU energy (RAPL), read at each window boundary (see PowerBatch.cpu). */
  cpuEnergy?: CpuEnergyMeter;
}

/** A cumulative CPU energy meter: mJ since it was created, monotonic, and when it was read. */
export interface CpuEnergyMeter {
  readonly packages: number;
  read(): { energyMj: number; tMs: number };
}

export interface SamplerStats {
  samples: number;
  windows: number;
  skippedTicks: number;
  sampleErrors: number;
  lastJitterP99Ms: number;
  /** p99 of the time one sample took, last window (ms). */
  lastSampleP99Ms: number;
}

export interface Sampler {
  start(): void;
  /** Takes a last sample, closes the current window (emitting it), stops. Idempotent. */
  stop(): Promise<void>;
  stats(): SamplerStats;
}

interface Column {
  uuid: string;
  tMs: number[];
  powerMw: number[];
  energyMj: number[];
  hasEnergy: boolean;
  smClockMhz: number[];
  memClockMhz: number[];
  utilPct: number[];
  tempC: number[];
}

export function createSampler(opts: SamplerOptions): Sampler {
  const sampleMs = opts.sampleIntervalMs ?? 100;
  const windowMs = opts.publishIntervalMs ?? 1000;
  if (windowMs % sampleMs !== 0) throw new RangeError(`publish interval ${windowMs} ms must be a multiple of the sample interval ${sampleMs} ms`);
  const stats: SamplerStats = { samples: 0, windows: 0, skippedTicks: 0, sampleErrors: 0, lastJitterP99Ms: 0, lastSampleP99Ms: 0 };
  let seq = 0;
  let windowStart = Math.floor(opts.clock.nowMs() / windowMs) * windowMs;
  let columns = new Map<number, Column>();
  const lastReading = new Map<number, { energyMj: number; tMs: number; powerMw: number }>();
  let jitters: number[] = [];
  let sampleMsList: number[] = [];
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> | undefined;
  let running = false;
  let nextTickMs = 0;
  let cpuLast: { energyMj: number; tMs: number } | undefined;
  const readCpu = () => {
    if (!opts.cpuEnergy) return undefined;
    try {
      return opts.cpuEnergy.read();
    } catch (err) {
      stats.sampleErrors++;
      opts.onError?.(err);
      return undefined;
    }
  };

  const add = (r: GpuReading) => {
    let c = columns.get(r.gpu);
    if (!c) {
      c = { uuid: r.uuid, tMs: [], powerMw: [], energyMj: [], hasEnergy: r.energyMj !== undefined, smClockMhz: [], memClockMhz: [], utilPct: [], tempC: [] };
      columns.set(r.gpu, c);
    }
    c.tMs.push(r.tMs);
    c.powerMw.push(r.powerMw);
    if (c.hasEnergy) c.energyMj.push(r.energyMj ?? Number.NaN);
    c.smClockMhz.push(r.smClockMhz ?? Number.NaN);
    c.memClockMhz.push(r.memClockMhz ?? Number.NaN);
    c.utilPct.push(r.utilPct ?? Number.NaN);
    c.tempC.push(r.tempC ?? Number.NaN);
  };

  const closeWindow = () => {
    const start = windowStart;
    const end = start + windowMs;
    windowStart = end;
    opts.onBoundary?.(start, end);
    const gpus: GpuSamples[] = [];
    const missingGpus = opts.gpus?.filter((g) => !columns.has(g));
    for (const [gpu, c] of [...columns].sort((a, b) => a[0] - b[0])) {
      const prev = lastReading.get(gpu);
      // A counter that went missing mid-window (NaN) makes the whole column unusable for deltas.
      const energyOk = c.hasEnergy && c.energyMj.every((e) => Number.isFinite(e));
      const g: GpuSamples = { gpu, uuid: c.uuid, tMs: c.tMs, powerMw: c.powerMw };
      if (energyOk) {
        g.energyMj = c.energyMj;
        g.energyStartMj = prev !== undefined && Number.isFinite(prev.energyMj) ? prev.energyMj : c.energyMj[0];
      }
      g.startTMs = prev?.tMs ?? c.tMs[0];
      if (prev !== undefined) g.startPowerMw = prev.powerMw;
      for (const key of ["smClockMhz", "memClockMhz", "utilPct", "tempC"] as const) {
        if (c[key].every((v) => Number.isFinite(v))) g[key] = c[key];
      }
      const lastT = c.tMs[c.tMs.length - 1]!;
      lastReading.set(gpu, { energyMj: energyOk ? c.energyMj[c.energyMj.length - 1]! : Number.NaN, tMs: lastT, powerMw: c.powerMw[c.powerMw.length - 1]! });
      gpus.push(g);
    }
    columns = new Map();
    // CPU energy over the window: from the reading that closed the last one (none after a failed read).
    const cpuNow = readCpu();
    const cpu = cpuLast && cpuNow ? { energyStartMj: cpuLast.energyMj, energyEndMj: cpuNow.energyMj, startTMs: cpuLast.tMs, endTMs: cpuNow.tMs, packages: opts.cpuEnergy!.packages } : undefined;
    cpuLast = cpuNow;
    stats.lastJitterP99Ms = p99(jitters);
    stats.lastSampleP99Ms = p99(sampleMsList);
    jitters = [];
    sampleMsList = [];
    const batch: PowerBatch = {
      v: 1,
      kind: "power",
      msgId: `${opts.node}:power:${start}`,
      node: opts.node,
      seq: seq++,
      windowStartMs: start,
      windowEndMs: end,
      source: opts.source.kind,
      gpus,
      ...(opts.instances ? { instances: opts.instances } : {}),
      ...(cpu ? { cpu } : {}),
      jitterP99Ms: stats.lastJitterP99Ms,
      ...(opts.health ? { agent: { ...opts.health(), sampleErrors: stats.sampleErrors, skippedTicks: stats.skippedTicks, sampleP99Ms: stats.lastSampleP99Ms, ...(missingGpus ? { missingGpus } : {}) } } : {}),
    };
    stats.windows++;
    opts.onWindow(batch);
  };

  const sampleOnce = async () => {
    try {
      const t0 = performance.now();
      const pending = opts.source.sample();
      // What the source's synchronous part (the FFI calls) held the event loop for.
      sampleMsList.push(performance.now() - t0);
      const readings = await pending;
      for (const r of readings) {
        // A GPU whose counter stopped being finite keeps publishing power only.
        if (r.energyMj !== undefined && !Number.isFinite(r.energyMj)) delete r.energyMj;
        add(r);
      }
      stats.samples++;
    } catch (err) {
      stats.sampleErrors++;
      opts.onError?.(err);
    }
  };

  const tick = () => {
    if (!running) return;
    const now = opts.clock.nowMs();
    jitters.push(Math.abs(now - nextTickMs));
    while (now >= windowStart + windowMs) closeWindow();
    if (inFlight) {
      stats.skippedTicks++;
    } else {
      inFlight = sampleOnce().finally(() => (inFlight = undefined));
    }
    schedule();
  };

  /**
   * Arms the timer for the next grid instant after the one just served. Node's timers run on the
   * event loop's millisecond clock, taken at the start of a loop turn, so one can fire up to a
   * millisecond before its instant by ours: the delay is rounded up by a millisecond, and a slot is
   * never served twice (an early tick used to be followed by a second sample a millisecond later).
   */
  const schedule = () => {
    const now = opts.clock.nowMs();
    const served = nextTickMs;
    nextTickMs = Math.max((Math.floor(now / sampleMs) + 1) * sampleMs, served + sampleMs);
    timer = setTimeout(tick, Math.ceil(nextTickMs - now) + 1);
  };

  let stopping: Promise<void> | undefined;
  return {
    start() {
      if (running) return;
      running = true;
      windowStart = Math.floor(opts.clock.nowMs() / windowMs) * windowMs;
      cpuLast = readCpu();
      inFlight = sampleOnce().finally(() => (inFlight = undefined));
      schedule();
    },
    stop() {
      return (stopping ??= (async () => {
        running = false;
        clearTimeout(timer);
        await inFlight;
        // Close every window that has ended (a boundary tick may not have run yet), then the one we
        // are in, with a last sample: events up to now all fall in closed, published windows.
        const now = opts.clock.nowMs();
        while (now >= windowStart + windowMs) closeWindow();
        await sampleOnce();
        closeWindow();
      })());
    },
    stats: () => ({ ...stats }),
  };
}

function p99(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = xs.sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]!;
}
