import { COUNTER_JITTER_MJ, type Clock, type GpuInfo } from "../../../shared/mod.ts";
import type { GpuReading, PowerSource, SourceDescription } from "../power-source.ts";
import {
  FIELD_VALUE_SIZE,
  FieldValueOffset,
  NVML_CLOCK_MEM,
  NVML_CLOCK_SM,
  NVML_FI_DEV_POWER_INSTANT,
  NVML_TEMPERATURE_GPU,
  NvmlValueType,
  type NvmlDevice,
} from "./bindings.ts";
import { CounterPower, StandingCounter } from "../../../shared/energy/mod.ts";
import { createNvmlControl, type NvmlControl } from "./control.ts";
import { readDriverVersion, readGpuInfo, readUuid } from "./device-info.ts";
import { NVML_SUCCESS, NvmlError, NvmlReturn } from "./errors.ts";
import { openNvml, type NvmlOpenOptions } from "./session.ts";

export interface NvmlSourceOptions extends NvmlOpenOptions {
  clock: Clock;
  /** NVML indices to sample (default: all). */
  gpus?: number[];
  /** Read instant power through NVML_FI_DEV_POWER_INSTANT where supported (default true). */
  instantPower?: boolean;
  /** Also read SM/memory clocks, utilization and temperature (default true). */
  extras?: boolean;
  /**
   * A GPU left out of a sample. Lost (also one NVML gives no handle for, reported as the source
   * opens), or with nothing to measure (neither power nor an energy counter): once, with
   * `leftOut` true, and never sampled again. Other errors: each time.
   */
  onGpuError?(gpu: number, err: NvmlError, leftOut: boolean): void;
  /** The energy counter went down (driver reload): the raw value is passed through regardless. */
  onCounterReset?(gpu: number, previousMj: number, currentMj: number): void;
  /**
   * The energy counter has not moved for a second while power reads well above zero: it is not
   * trusted from then on (readings carry no energyMj, so energy is integrated from power).
   */
  onCounterStuck?(gpu: number, valueMj: number, powerMw: number): void;
  /**
   * How the sampling calls are made. `sync` (µs per call, ~0.3 µs of overhead) holds the event
   * loop for the whole sample; `async` runs each call on koffi's thread pool (~40 µs of CPU per
   * call measured, so about 2% of a core at 8 GPUs × 10 Hz) and frees the loop; `auto` (default)
   * starts sync and moves to async for good after `slowSamples` samples in a row held the loop
   * longer than `slowSampleMs`: a slow driver never stalls the request tap for long.
   */
  calls?: "auto" | "sync" | "async";
  slowSampleMs?: number;
  slowSamples?: number;
  /** Sampling moved to async calls (auto mode), with the sample time that made it move. */
  onCallsChange?(calls: "async", sampleMs: number): void;
}

export interface NvmlGpuStats {
  gpu: number;
  uuid: string;
  lost: boolean;
  /**
   * Where power comes from now: the instant field, the 1-s average of nvmlDeviceGetPowerUsage, the
   * energy counter over the trailing second where the driver reads no power, or
   * nowhere (neither power nor a counter: the GPU is left out of samples).
   */
  power: "instant" | "average" | "counter" | "none";
  energyCounter: boolean;
  counterResets: number;
  errors: number;
}

export interface NvmlSourceStats {
  samples: number;
  /** How the sampling calls are made now (see NvmlSourceOptions.calls). */
  calls: "sync" | "async";
  /** Readings left out because a GPU failed (lost or another error). */
  gpuErrors: number;
  lostGpus: number[];
  /** GPUs left out because they have neither power nor an energy counter to read. */
  unmeasurableGpus: number[];
  counterResets: number;
  gpus: NvmlGpuStats[];
}

export interface NvmlSource extends PowerSource {
  readonly kind: "nvml";
  stats(): NvmlSourceStats;
  /** Clock and power-limit control, bound but never used by sampling (needs root; always undo). */
  readonly control: NvmlControl;
}

interface GpuState {
  gpu: number;
  dev: NvmlDevice;
  uuid: string;
  lost: boolean;
  instant: boolean;
  /** nvmlDeviceGetPowerUsage answers (until NOT_SUPPORTED says otherwise). */
  average: boolean;
  energy: boolean;
  smClock: boolean;
  memClock: boolean;
  util: boolean;
  temp: boolean;
  lastEnergyMj: number | undefined;
  /** Whether the counter stands still while power is drawn (stuck). */
  standing: StandingCounter;
  /** Power from the energy counter, where the driver reads none. */
  counterPower: CounterPower;
  counterResets: number;
  errors: number;
  /** Out-buffers of this GPU's calls (its own, so GPUs can be read in parallel with async calls). */
  buf: { u32: Uint32Array; u64: BigUint64Array; field: Buffer; fieldView: DataView };
}

/** One NVML call, as the sampling generator asks for it; the driver answers with its return code. */
interface Call {
  f: (...args: never[]) => number;
  args: unknown[];
}
type Reading<T> = Generator<Call, T, number>;

/** The request for one call: `const code = yield call(f, ...args)` inside a reading. */
function call<A extends unknown[]>(f: (...args: A) => number, ...args: A): Call {
  return { f: f as unknown as Call["f"], args };
}

/** Runs a reading with direct calls: everything happens before this returns. */
function runSync<T>(g: Reading<T>): T {
  for (let r = g.next(); ; ) {
    if (r.done) return r.value;
    r = g.next((r.value.f as (...a: unknown[]) => number)(...r.value.args));
  }
}

/** Runs a reading with koffi's asynchronous calls: each call on a worker thread, the loop free. */
async function runAsync<T>(g: Reading<T>): Promise<T> {
  for (let r = g.next(); ; ) {
    if (r.done) return r.value;
    const { f, args } = r.value;
    const code = await new Promise<number>((resolve, reject) =>
      (f as unknown as { async(...a: unknown[]): void }).async(...args, (err: unknown, v: number) => (err ? reject(err) : resolve(v))),
    );
    r = g.next(code);
  }
}

const newBuffers = (): GpuState["buf"] => {
  const field = Buffer.alloc(FIELD_VALUE_SIZE);
  return { u32: new Uint32Array(2), u64: new BigUint64Array(1), field, fieldView: new DataView(field.buffer, field.byteOffset, field.byteLength) };
};

/** Some power reading still answers: instant, average, or the energy counter to derive it from. */
const measurable = (s: GpuState) => s.instant || s.average || s.energy;
/** A GPU that is read each sample: not lost, and with something left to measure. */
const sampled = (s: GpuState) => !s.lost && measurable(s);

/** Field support is probed by use: NOT_SUPPORTED (or a missing symbol) turns a field off for good. */
const GONE = new Set<number>([NvmlReturn.NOT_SUPPORTED, NvmlReturn.FUNCTION_NOT_FOUND, NvmlReturn.NO_PERMISSION]);
/**
 * A counter frozen this long while power says this much energy went by is stuck. Counters move every
 * 20–100 ms on H100 (and within a second on older GPUs), so 3 s frozen at tens of watts is no update lag.
 */
const STUCK_COUNTER_MS = 3000;
const STUCK_COUNTER_MJ = 5000;

/**
 * GPU power through NVML. Opens (loads + nvmlInit_v2) synchronously and throws NvmlError where that
 * fails. Every sample reads, per GPU: the energy counter (mJ since driver load; absent where the GPU
 * has none), power (instant field if supported, else the 1-s average, else the counter over the
 * trailing second), and, unless `extras: false`,
 * SM/memory clock, utilization and temperature. Calls go into pre-allocated buffers, synchronously
 * while they are fast (µs each), on koffi's threads once a slow driver makes them hold the event
 * loop (see `calls`).
 */
export function createNvmlSource(opts: NvmlSourceOptions): NvmlSource {
  const session = openNvml(opts);
  const { binding } = session;
  const fn = binding.fn;
  const extras = opts.extras ?? true;
  const indices = opts.gpus ?? session.devices.map((_, i) => i);
  const stats = { samples: 0, gpuErrors: 0, counterResets: 0 };
  const states: GpuState[] = [];
  /** Selected GPUs NVML gave no handle for: lost from the start. */
  const noHandle: number[] = [];
  try {
    for (const gpu of indices) {
      if (gpu >= session.devices.length) throw new NvmlError(NvmlReturn.INVALID_ARGUMENT, "createNvmlSource", { gpu, detail: `no GPU ${gpu} (${session.devices.length} present)` });
      const dev = session.devices[gpu];
      if (dev === undefined) {
        noHandle.push(gpu);
        stats.gpuErrors++;
        opts.onGpuError?.(gpu, session.unavailable.find((e) => e.gpu === gpu)!, true);
        continue;
      }
      const state: GpuState = {
        gpu, dev, uuid: `gpu-${gpu}`, lost: false,
        instant: (opts.instantPower ?? true) && fn.nvmlDeviceGetFieldValues !== undefined,
        average: true,
        energy: fn.nvmlDeviceGetTotalEnergyConsumption !== undefined,
        smClock: extras && fn.nvmlDeviceGetClockInfo !== undefined, memClock: extras && fn.nvmlDeviceGetClockInfo !== undefined,
        util: extras && fn.nvmlDeviceGetUtilizationRates !== undefined, temp: extras && fn.nvmlDeviceGetTemperature !== undefined,
        lastEnergyMj: undefined, standing: new StandingCounter(STUCK_COUNTER_MS, STUCK_COUNTER_MJ), counterPower: new CounterPower(), counterResets: 0, errors: 0, buf: newBuffers(),
      };
      states.push(state);
      // The UUID names the GPU in every message for the whole run: a sporadic failure (TIMEOUT) is
      // tried again before the GPU is named by its index.
      for (let attempt = 1; ; attempt++) {
        try {
          state.uuid = readUuid(binding, dev, gpu) || state.uuid; // an empty UUID would fail the message schema
          break;
        } catch (err) {
          // A library without nvmlDeviceGetUUID: the GPU is named by its index, which is no fault of it.
          if (err instanceof NvmlError && err.nvmlCode === NvmlReturn.FUNCTION_NOT_FOUND) break;
          if (attempt < 3 && err instanceof NvmlError && !err.permanent) continue;
          fail(state, err);
          break;
        }
      }
    }
  } catch (err) {
    session.close();
    throw err;
  }

  let closed = false;
  let calls: "sync" | "async" = opts.calls === "async" ? "async" : "sync";
  const slowMs = opts.slowSampleMs ?? 5;
  const slowNeeded = opts.slowSamples ?? 3;
  let slowStreak = 0;

  function fail(s: GpuState, err: unknown): void {
    const e = err instanceof NvmlError ? err : new NvmlError(NvmlReturn.UNKNOWN, "sample", { gpu: s.gpu, cause: err });
    if (s.lost) return;
    s.errors++;
    stats.gpuErrors++;
    if (e.nvmlCode === NvmlReturn.GPU_IS_LOST) s.lost = true;
    opts.onGpuError?.(s.gpu, e, !sampled(s));
  }

  /** Instant power (mW) from the field API; undefined where the field is unsupported or failed. */
  function* instantPowerMw(s: GpuState): Reading<number | undefined> {
    const { field, fieldView } = s.buf;
    fieldView.setUint32(FieldValueOffset.fieldId, NVML_FI_DEV_POWER_INSTANT, true);
    fieldView.setUint32(FieldValueOffset.scopeId, 0, true);
    // The field is optional: whatever keeps the call from answering (NOT_SUPPORTED on drivers without
    // the field API, a sporadic TIMEOUT) falls back to nvmlDeviceGetPowerUsage; only a lost GPU is thrown.
    const code = (yield call(fn.nvmlDeviceGetFieldValues!, s.dev, 1, field));
    if (code !== NVML_SUCCESS) {
      if (code === NvmlReturn.GPU_IS_LOST) binding.check(code, "nvmlDeviceGetFieldValues", s.gpu);
      if (GONE.has(code) || code === NvmlReturn.INVALID_ARGUMENT) s.instant = false;
      return undefined;
    }
    const ret = fieldView.getUint32(FieldValueOffset.nvmlReturn, true);
    if (ret !== NVML_SUCCESS) {
      if (GONE.has(ret)) s.instant = false;
      return undefined;
    }
    const at = FieldValueOffset.value;
    let mw: number;
    switch (fieldView.getUint32(FieldValueOffset.valueType, true)) {
      case NvmlValueType.UNSIGNED_INT: mw = fieldView.getUint32(at, true); break;
      case NvmlValueType.SIGNED_INT: mw = fieldView.getInt32(at, true); break;
      case NvmlValueType.DOUBLE: mw = fieldView.getFloat64(at, true); break;
      case NvmlValueType.UNSIGNED_LONG:
      case NvmlValueType.UNSIGNED_LONG_LONG: mw = Number(fieldView.getBigUint64(at, true)); break;
      case NvmlValueType.SIGNED_LONG_LONG: mw = Number(fieldView.getBigInt64(at, true)); break;
      case NvmlValueType.UNSIGNED_SHORT: mw = fieldView.getUint16(at, true); break;
      default: s.instant = false; return undefined;
    }
    // NaN or a negative power would make the whole node's POWER window fail validation downstream.
    return Number.isFinite(mw) && mw >= 0 ? mw : undefined;
  }

  /** One optional u32 reading; turns the field off on NOT_SUPPORTED; throws on GPU_IS_LOST. */
  function optionalU32(s: GpuState, code: number, call: string): number | undefined {
    if (code === NVML_SUCCESS) return s.buf.u32[0];
    if (code === NvmlReturn.GPU_IS_LOST) binding.check(code, call, s.gpu);
    if (GONE.has(code)) {
      if (call === "nvmlDeviceGetClockInfo(SM)") s.smClock = false;
      else if (call === "nvmlDeviceGetClockInfo(MEM)") s.memClock = false;
      else if (call === "nvmlDeviceGetUtilizationRates") s.util = false;
      else if (call === "nvmlDeviceGetTemperature") s.temp = false;
    }
    return undefined;
  }

  /** One GPU's reading, as a sequence of NVML calls (run by runSync or runAsync). */
  function* readGpu(s: GpuState): Reading<GpuReading | undefined> {
    const { u32, u64 } = s.buf;
    // The reading's time is the middle of the energy counter's call (the quantity that must line up
    // with window edges), else of the power calls. A call's middle is exact to half its duration,
    // which with async calls includes the wait for a pool thread.
    let t0 = opts.clock.nowMs();
    let tMs: number | undefined;
    let energyMj: number | undefined;
    if (s.energy) {
      const code = (yield call(fn.nvmlDeviceGetTotalEnergyConsumption!, s.dev, u64));
      if (code === NVML_SUCCESS) {
        energyMj = Number(u64[0]);
        // A counter a little below its last reading is jitter, not a reset: hold the last value, or the
        // analyzer counts the step twice (once integrated as a "reset", once in the next delta).
        if (s.lastEnergyMj !== undefined && energyMj < s.lastEnergyMj && s.lastEnergyMj - energyMj <= COUNTER_JITTER_MJ) energyMj = s.lastEnergyMj;
        tMs = (t0 + opts.clock.nowMs()) / 2;
      } else if (GONE.has(code)) s.energy = false;
      else binding.check(code, "nvmlDeviceGetTotalEnergyConsumption", s.gpu);
      t0 = opts.clock.nowMs();
    }
    let powerMw = s.instant ? yield* instantPowerMw(s) : undefined;
    if (powerMw === undefined && s.average) {
      const code = (yield call(fn.nvmlDeviceGetPowerUsage, s.dev, u32));
      if (code === NVML_SUCCESS) powerMw = u32[0]!;
      else if (GONE.has(code)) s.average = false;
      else binding.check(code, "nvmlDeviceGetPowerUsage", s.gpu);
    }
    tMs ??= (t0 + opts.clock.nowMs()) / 2;
    // A counter stuck while the driver reads power would publish 0 J: left out for integrated power.
    if (powerMw !== undefined && energyMj !== undefined && s.standing.next(tMs, energyMj, powerMw)) {
      s.energy = false;
      opts.onCounterStuck?.(s.gpu, energyMj, powerMw);
      energyMj = undefined;
    }
    if (powerMw === undefined) {
      if (energyMj === undefined) {
        const detail = "neither power nor an energy counter answers: this GPU cannot be measured";
        throw new NvmlError(NvmlReturn.NOT_SUPPORTED, "nvmlDeviceGetPowerUsage", { gpu: s.gpu, detail });
      }
      powerMw = s.counterPower.next(tMs, energyMj);
    }
    if (powerMw === undefined) {
      // The counter's first reading: a baseline for power, left out of the samples.
      s.lastEnergyMj = energyMj;
      return undefined;
    }
    const r: GpuReading = { gpu: s.gpu, uuid: s.uuid, tMs, powerMw };
    if (energyMj !== undefined) {
      if (s.lastEnergyMj !== undefined && energyMj < s.lastEnergyMj) {
        s.counterResets++;
        stats.counterResets++;
        opts.onCounterReset?.(s.gpu, s.lastEnergyMj, energyMj);
      }
      s.lastEnergyMj = energyMj;
      r.energyMj = energyMj;
    }
    if (s.smClock) {
      const v = optionalU32(s, (yield call(fn.nvmlDeviceGetClockInfo!, s.dev, NVML_CLOCK_SM, u32)), "nvmlDeviceGetClockInfo(SM)");
      if (v !== undefined) r.smClockMhz = v;
    }
    if (s.memClock) {
      const v = optionalU32(s, (yield call(fn.nvmlDeviceGetClockInfo!, s.dev, NVML_CLOCK_MEM, u32)), "nvmlDeviceGetClockInfo(MEM)");
      if (v !== undefined) r.memClockMhz = v;
    }
    if (s.util) {
      // nvmlUtilization_t { gpu, memory } in %: u32[0] is the GPU share.
      const v = optionalU32(s, (yield call(fn.nvmlDeviceGetUtilizationRates!, s.dev, u32)), "nvmlDeviceGetUtilizationRates");
      if (v !== undefined) r.utilPct = v;
    }
    if (s.temp) {
      const v = optionalU32(s, (yield call(fn.nvmlDeviceGetTemperature!, s.dev, NVML_TEMPERATURE_GPU, u32)), "nvmlDeviceGetTemperature");
      if (v !== undefined) r.tempC = v;
    }
    return r;
  }

  function sampleSync(): GpuReading[] {
    const out: GpuReading[] = [];
    for (const s of states) {
      if (!sampled(s)) continue;
      try {
        const r = runSync(readGpu(s));
        if (r) out.push(r);
      } catch (err) {
        fail(s, err);
      }
    }
    return out;
  }

  /** Every GPU at once, each GPU's calls in order on koffi's threads. */
  async function sampleAsync(): Promise<GpuReading[]> {
    const readings = await Promise.all(
      states.filter(sampled).map((s) =>
        runAsync(readGpu(s)).catch((err: unknown) => {
          fail(s, err);
          return undefined;
        }),
      ),
    );
    return readings.filter((r): r is GpuReading => r !== undefined);
  }

  const lostGpus = () => [...noHandle, ...states.filter((s) => s.lost).map((s) => s.gpu)].sort((a, b) => a - b);

  return {
    kind: "nvml",
    control: createNvmlControl(binding, session.devices),
    async describe(): Promise<SourceDescription> {
      if (closed) throw new NvmlError(NvmlReturn.UNINITIALIZED, "describe", { detail: "source is closed" });
      const gpus: GpuInfo[] = [];
      for (const s of states) {
        if (s.lost) continue;
        try {
          gpus.push(readGpuInfo(binding, s.dev, s.gpu, s.uuid));
        } catch (err) {
          fail(s, err);
        }
      }
      const unreadable = lostGpus();
      let driverVersion: string | undefined;
      try {
        driverVersion = readDriverVersion(binding);
      } catch {
        driverVersion = undefined; // optional in the inventory
      }
      return { gpus, ...(unreadable.length ? { unreadableGpus: unreadable } : {}), ...(driverVersion === undefined ? {} : { driverVersion }) };
    },
    sample() {
      if (closed) return Promise.reject(new NvmlError(NvmlReturn.UNINITIALIZED, "sample", { detail: "source is closed" }));
      stats.samples++;
      if (calls === "async") return sampleAsync();
      const t0 = performance.now();
      const out = sampleSync();
      const heldMs = performance.now() - t0;
      if (opts.calls === undefined || opts.calls === "auto") {
        slowStreak = heldMs > slowMs ? slowStreak + 1 : 0;
        if (slowStreak >= slowNeeded) {
          calls = "async";
          opts.onCallsChange?.("async", heldMs);
        }
      }
      return Promise.resolve(out);
    },
    stats(): NvmlSourceStats {
      return {
        ...stats,
        calls,
        lostGpus: lostGpus(),
        unmeasurableGpus: states.filter((s) => !measurable(s)).map((s) => s.gpu),
        gpus: states.map((s) => ({
          gpu: s.gpu, uuid: s.uuid, lost: s.lost, power: s.instant ? "instant" : s.average ? "average" : s.energy ? "counter" : "none",
          energyCounter: s.energy, counterResets: s.counterResets, errors: s.errors,
        })),
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      session.close();
    },
  };
}
