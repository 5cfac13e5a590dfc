import { COUNTER_JITTER_MJ, type Clock } from "../../../shared/mod.ts";
import { CounterPower, StandingCounter } from "../../../shared/energy/mod.ts";
import type { GpuReading } from "../power-source.ts";
import { FIELD_VALUE_SIZE, FieldValueOffset, NVML_CLOCK_MEM, NVML_CLOCK_SM, NVML_FI_DEV_POWER_INSTANT, NVML_TEMPERATURE_GPU, NvmlValueType, type NvmlBinding, type NvmlDevice } from "./bindings.ts";
import { call, type Reading } from "./calls.ts";
import { NVML_SUCCESS, NvmlError, NvmlReturn } from "./errors.ts";

/**
 * One GPU's reading: the energy counter, power (instant field, 1-s average, or the counter over
 * the trailing second), then clocks, utilization and temperature. What a GPU answers is learnt by
 * use: a field that says NOT_SUPPORTED is not asked again. The state of each GPU is here; the
 * source (nvml-source.ts) decides which GPUs to read and how the calls are run.
 */
export interface GpuState {
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
  /** When the extras were last read (-Infinity: never), and what they read: carried in between. */
  extrasAtMs: number;
  heldExtras: Pick<GpuReading, "smClockMhz" | "memClockMhz" | "utilPct" | "tempC">;
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

export const newBuffers = (): GpuState["buf"] => {
  const field = Buffer.alloc(FIELD_VALUE_SIZE);
  return { u32: new Uint32Array(2), u64: new BigUint64Array(1), field, fieldView: new DataView(field.buffer, field.byteOffset, field.byteLength) };
};

/** Some power reading still answers: instant, average, or the energy counter to derive it from. */
export const measurable = (s: GpuState) => s.instant || s.average || s.energy;
/** A GPU that is read each sample: not lost, and with something left to measure. */
export const sampled = (s: GpuState) => !s.lost && measurable(s);

/** Field support is probed by use: NOT_SUPPORTED (or a missing symbol) turns a field off for good. */
const GONE = new Set<number>([NvmlReturn.NOT_SUPPORTED, NvmlReturn.FUNCTION_NOT_FOUND, NvmlReturn.NO_PERMISSION]);
/**
 * A counter frozen this long while power says this much energy went by is stuck. Counters move every
 * 20–100 ms on H100 (and within a second on older GPUs), so 3 s frozen at tens of watts is no update lag.
 */
const STUCK_COUNTER_MS = 3000;
const STUCK_COUNTER_MJ = 5000;

/** A GPU's state before its first reading: every field it may have is on until it answers otherwise. */
export function newGpuState(gpu: number, dev: NvmlDevice, fn: NvmlBinding["fn"], o: { instantPower: boolean; extras: boolean }): GpuState {
  const clocks = o.extras && fn.nvmlDeviceGetClockInfo !== undefined;
  return {
    gpu, dev, uuid: `gpu-${gpu}`, lost: false,
    instant: o.instantPower && fn.nvmlDeviceGetFieldValues !== undefined,
    average: true,
    energy: fn.nvmlDeviceGetTotalEnergyConsumption !== undefined,
    smClock: clocks, memClock: clocks,
    util: o.extras && fn.nvmlDeviceGetUtilizationRates !== undefined, temp: o.extras && fn.nvmlDeviceGetTemperature !== undefined,
    extrasAtMs: Number.NEGATIVE_INFINITY, heldExtras: {},
    lastEnergyMj: undefined, standing: new StandingCounter(STUCK_COUNTER_MS, STUCK_COUNTER_MJ), counterPower: new CounterPower(), counterResets: 0, errors: 0, buf: newBuffers(),
  };
}

export interface GpuReaderOptions {
  binding: NvmlBinding;
  clock: Clock;
  onCounterReset(gpu: number, previousMj: number, currentMj: number): void;
  onCounterStuck?(gpu: number, valueMj: number, powerMw: number): void;
  /**
   * Read clocks, utilization and temperature at most this often (ms); readings in between carry the
   * last values read. 0: every reading. Each is one more driver call per GPU per sample, and a call
   * costs ~0.6 ms on some hosts (an H200 under gVisor, measured), while power and energy are what
   * must be read at the sampling rate.
   */
  extrasIntervalMs?: number;
}

export function createGpuReader(opts: GpuReaderOptions): { readGpu(s: GpuState): Reading<GpuReading | undefined> } {
  const { binding } = opts;
  const fn = binding.fn;
  // 10 % early, so that sampling jitter does not push a 1-s interval to every 1.1 s.
  const extrasEveryMs = 0.9 * (opts.extrasIntervalMs ?? 0);

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
        opts.onCounterReset(s.gpu, s.lastEnergyMj, energyMj);
      }
      s.lastEnergyMj = energyMj;
      r.energyMj = energyMj;
    }
    if (tMs - s.extrasAtMs >= extrasEveryMs) {
      yield* readExtras(s, r);
      s.extrasAtMs = tMs;
      s.heldExtras = {};
      for (const k of ["smClockMhz", "memClockMhz", "utilPct", "tempC"] as const) if (r[k] !== undefined) s.heldExtras[k] = r[k];
    } else Object.assign(r, s.heldExtras);
    return r;
  }

  /** Clocks, utilization and temperature, where the GPU answers them, into `r`. */
  function* readExtras(s: GpuState, r: GpuReading): Reading<void> {
    const { u32 } = s.buf;
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
  }

  return { readGpu };
}
