import { COUNTER_JITTER_MJ, powerMessage, type Clock, type GpuSamples, type PowerBatch } from "../../shared/mod.ts";
import type { GpuReading, PowerSource } from "./power-source.ts";
import { carryVerdict, type CarriedReading, type CarriedWindow } from "./window-carry.ts";

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
  /** The open window carried across restarts (see window-carry.ts). */
  carry?: SamplerCarry;
}

export interface SamplerCarry {
  /** What the previous run saved, continued at start() if recent enough (carryVerdict). */
  resumed?: CarriedWindow;
  maxGapMs?: number;
  /** Called with the state after every sample and every window closed, and at stop. Must not block. */
  save(state: CarriedWindow): void;
  /** Says at start() whether the carried window was continued, and if not why. */
  say?(line: string): void;
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
  gpu: number;
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
  const lastReading = new Map<number, CarriedReading>();
  /** GPUs whose baseline was carried from the last run: their first new reading must be the same GPU, its counter not gone back. */
  const unchecked = new Set<number>();
  let lastClosed: PowerBatch | undefined;
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
      c = { gpu: r.gpu, uuid: r.uuid, tMs: [], powerMw: [], energyMj: [], hasEnergy: r.energyMj !== undefined, smClockMhz: [], memClockMhz: [], utilPct: [], tempC: [] };
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
      lastReading.set(gpu, { gpu, uuid: c.uuid, energyMj: energyOk ? c.energyMj[c.energyMj.length - 1]! : Number.NaN, tMs: lastT, powerMw: c.powerMw[c.powerMw.length - 1]! });
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
    const batch: PowerBatch = powerMessage({
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
    });
    stats.windows++;
    lastClosed = batch;
    opts.onWindow(batch);
    saveCarry(false);
  };

  const saveCarry = (stopped: boolean) => {
    if (!opts.carry) return;
    opts.carry.save({
      v: 1,
      node: opts.node,
      windowMs,
      windowStartMs: windowStart,
      seq,
      last: [...lastReading.values()],
      columns: [...columns.values()],
      // After a graceful stop everything closed was flushed: nothing to publish again.
      ...(lastClosed && !stopped ? { lastClosed } : {}),
      stopped,
    });
  };

  /** A carried baseline only holds for the same GPU whose counter has not restarted since. */
  const checkCarried = (r: GpuReading) => {
    unchecked.delete(r.gpu);
    const prev = lastReading.get(r.gpu);
    if (!prev) return;
    if (prev.uuid !== r.uuid) {
      lastReading.delete(r.gpu);
      if (columns.get(r.gpu)?.uuid !== r.uuid) columns.delete(r.gpu);
      opts.carry?.say?.(`GPU ${r.gpu} is ${r.uuid}, was ${prev.uuid}: its window starts afresh`);
    } else if (Number.isFinite(prev.energyMj) && r.energyMj !== undefined && r.energyMj < prev.energyMj - COUNTER_JITTER_MJ) {
      lastReading.delete(r.gpu);
      opts.carry?.say?.(`GPU ${r.gpu}'s energy counter went back since the last run (driver reload?): its window starts afresh`);
    }
  };

  /**
   * Continues the window the last run saved: its seq, its per-GPU baselines, its samples. A window
   * that ended while the agent was down is published now (its samples are all there were); the
   * current one then starts from its last readings, so the energy of the gap is counted in it.
   */
  const resume = (c: CarriedWindow, now: number) => {
    const verdict = carryVerdict(c, { node: opts.node, windowMs, nowMs: now, ...(opts.carry?.maxGapMs !== undefined ? { maxGapMs: opts.carry.maxGapMs } : {}) });
    if (!verdict.ok) {
      opts.carry?.say?.(`not continuing the window the last run saved: ${verdict.reason}`);
      return;
    }
    seq = c.seq;
    for (const r of c.last) lastReading.set(r.gpu, { ...r });
    for (const col of c.columns) columns.set(col.gpu, { ...col });
    // The window closed last may have died in the outbox's memory: the same message again, same msgId.
    if (c.lastClosed && !c.stopped) opts.onWindow(c.lastClosed);
    windowStart = c.windowStartMs;
    if (now >= windowStart + windowMs) {
      if (columns.size > 0) closeWindow();
      windowStart = Math.floor(now / windowMs) * windowMs;
    }
    for (const gpu of lastReading.keys()) unchecked.add(gpu);
    opts.carry?.say?.(`continuing from the window of ${new Date(c.windowStartMs).toISOString()} the last run ${c.stopped ? "stopped in" : "left open"} (seq ${c.seq}, ${new Set([...c.last, ...c.columns].map((x) => x.gpu)).size} GPUs)`);
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
        if (unchecked.has(r.gpu)) checkCarried(r);
        add(r);
      }
      stats.samples++;
      saveCarry(false);
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
      const now = opts.clock.nowMs();
      windowStart = Math.floor(now / windowMs) * windowMs;
      // Before the CPU meter is first read: a carried window closed here has no CPU reading of this run.
      if (opts.carry?.resumed) resume(opts.carry.resumed, now);
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
        saveCarry(true);
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
