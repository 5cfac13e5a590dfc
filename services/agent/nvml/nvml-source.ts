import type { Clock, GpuInfo } from "../../../shared/mod.ts";
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
  /** A GPU left out of a sample (lost: once, then never sampled again; other errors: each time). */
  onGpuError?(gpu: number, err: NvmlError): void;
  /** The energy counter went down (driver reload): the raw value is passed through regardless. */
  onCounterReset?(gpu: number, previousMj: number, currentMj: number): void;
}

export interface NvmlGpuStats {
  gpu: number;
  uuid: string;
  lost: boolean;
  /** Where power comes from now: the instant field, or the 1-s average of nvmlDeviceGetPowerUsage. */
  power: "instant" | "average";
  energyCounter: boolean;
  counterResets: number;
  errors: number;
}

export interface NvmlSourceStats {
  samples: number;
  /** Readings left out because a GPU failed (lost or another error). */
  gpuErrors: number;
  lostGpus: number[];
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
  energy: boolean;
  smClock: boolean;
  memClock: boolean;
  util: boolean;
  temp: boolean;
  lastEnergyMj: number | undefined;
  counterResets: number;
  errors: number;
}

/** Field support is probed by use: NOT_SUPPORTED (or a missing symbol) turns a field off for good. */
const GONE = new Set<number>([NvmlReturn.NOT_SUPPORTED, NvmlReturn.FUNCTION_NOT_FOUND, NvmlReturn.NO_PERMISSION]);

/**
 * GPU power through NVML. Opens (loads + nvmlInit_v2) synchronously and throws NvmlError where that
 * fails. Every sample reads, per GPU: the energy counter (mJ since driver load; absent where the GPU
 * has none), power (instant field if supported, else the 1-s average), and, unless `extras: false`,
 * SM/memory clock, utilization and temperature. Calls are synchronous FFI calls into pre-allocated
 * buffers: on the order of µs each on real drivers (the energy counter can take ms on some).
 */
export function createNvmlSource(opts: NvmlSourceOptions): NvmlSource {
  const session = openNvml(opts);
  const { binding } = session;
  const fn = binding.fn;
  const extras = opts.extras ?? true;
  const indices = opts.gpus ?? session.devices.map((_, i) => i);
  const stats = { samples: 0, gpuErrors: 0, counterResets: 0 };
  const states: GpuState[] = [];
  try {
    for (const gpu of indices) {
      const dev = session.devices[gpu];
      if (dev === undefined) throw new NvmlError(NvmlReturn.INVALID_ARGUMENT, "createNvmlSource", { gpu, detail: `no GPU ${gpu} (${session.devices.length} present)` });
      const state: GpuState = {
        gpu, dev, uuid: `gpu-${gpu}`, lost: false,
        instant: (opts.instantPower ?? true) && fn.nvmlDeviceGetFieldValues !== undefined,
        energy: fn.nvmlDeviceGetTotalEnergyConsumption !== undefined,
        smClock: extras, memClock: extras, util: extras, temp: extras,
        lastEnergyMj: undefined, counterResets: 0, errors: 0,
      };
      states.push(state);
      try {
        state.uuid = readUuid(binding, dev, gpu);
      } catch (err) {
        fail(state, err);
      }
    }
  } catch (err) {
    session.close();
    throw err;
  }

  // Out-buffers shared by all GPUs: calls are synchronous, one at a time.
  const u32 = new Uint32Array(2);
  const u64 = new BigUint64Array(1);
  const field = Buffer.alloc(FIELD_VALUE_SIZE);
  const fieldView = new DataView(field.buffer, field.byteOffset, field.byteLength);
  let closed = false;

  function fail(s: GpuState, err: unknown): void {
    const e = err instanceof NvmlError ? err : new NvmlError(NvmlReturn.UNKNOWN, "sample", { gpu: s.gpu, cause: err });
    if (s.lost) return;
    s.errors++;
    stats.gpuErrors++;
    if (e.nvmlCode === NvmlReturn.GPU_IS_LOST) s.lost = true;
    opts.onGpuError?.(s.gpu, e);
  }

  /** Instant power (mW) from the field API; undefined where the field is unsupported or failed. */
  function instantPowerMw(s: GpuState): number | undefined {
    fieldView.setUint32(FieldValueOffset.fieldId, NVML_FI_DEV_POWER_INSTANT, true);
    fieldView.setUint32(FieldValueOffset.scopeId, 0, true);
    binding.check(fn.nvmlDeviceGetFieldValues!(s.dev, 1, field), "nvmlDeviceGetFieldValues", s.gpu);
    const ret = fieldView.getUint32(FieldValueOffset.nvmlReturn, true);
    if (ret !== NVML_SUCCESS) {
      if (GONE.has(ret)) s.instant = false;
      return undefined;
    }
    const at = FieldValueOffset.value;
    switch (fieldView.getUint32(FieldValueOffset.valueType, true)) {
      case NvmlValueType.UNSIGNED_INT: return fieldView.getUint32(at, true);
      case NvmlValueType.SIGNED_INT: return fieldView.getInt32(at, true);
      case NvmlValueType.DOUBLE: return fieldView.getFloat64(at, true);
      case NvmlValueType.UNSIGNED_LONG:
      case NvmlValueType.UNSIGNED_LONG_LONG: return Number(fieldView.getBigUint64(at, true));
      case NvmlValueType.SIGNED_LONG_LONG: return Number(fieldView.getBigInt64(at, true));
      case NvmlValueType.UNSIGNED_SHORT: return fieldView.getUint16(at, true);
      default: s.instant = false; return undefined;
    }
  }

  /** One optional u32 reading; turns the field off on NOT_SUPPORTED; throws on GPU_IS_LOST. */
  function optionalU32(s: GpuState, code: number, call: string): number | undefined {
    if (code === NVML_SUCCESS) return u32[0];
    if (code === NvmlReturn.GPU_IS_LOST) binding.check(code, call, s.gpu);
    if (GONE.has(code)) {
      if (call === "nvmlDeviceGetClockInfo(SM)") s.smClock = false;
      else if (call === "nvmlDeviceGetClockInfo(MEM)") s.memClock = false;
      else if (call === "nvmlDeviceGetUtilizationRates") s.util = false;
      else if (call === "nvmlDeviceGetTemperature") s.temp = false;
    }
    return undefined;
  }

  function readGpu(s: GpuState): GpuReading {
    const t0 = opts.clock.nowMs();
    let energyMj: number | undefined;
    if (s.energy) {
      const code = fn.nvmlDeviceGetTotalEnergyConsumption!(s.dev, u64);
      if (code === NVML_SUCCESS) energyMj = Number(u64[0]);
      else if (GONE.has(code)) s.energy = false;
      else binding.check(code, "nvmlDeviceGetTotalEnergyConsumption", s.gpu);
    }
    let powerMw = s.instant ? instantPowerMw(s) : undefined;
    if (powerMw === undefined) {
      binding.check(fn.nvmlDeviceGetPowerUsage(s.dev, u32), "nvmlDeviceGetPowerUsage", s.gpu);
      powerMw = u32[0]!;
    }
    const tMs = (t0 + opts.clock.nowMs()) / 2;
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
      const v = optionalU32(s, fn.nvmlDeviceGetClockInfo(s.dev, NVML_CLOCK_SM, u32), "nvmlDeviceGetClockInfo(SM)");
      if (v !== undefined) r.smClockMhz = v;
    }
    if (s.memClock) {
      const v = optionalU32(s, fn.nvmlDeviceGetClockInfo(s.dev, NVML_CLOCK_MEM, u32), "nvmlDeviceGetClockInfo(MEM)");
      if (v !== undefined) r.memClockMhz = v;
    }
    if (s.util) {
      // nvmlUtilization_t { gpu, memory } in %: u32[0] is the GPU share.
      const v = optionalU32(s, fn.nvmlDeviceGetUtilizationRates(s.dev, u32), "nvmlDeviceGetUtilizationRates");
      if (v !== undefined) r.utilPct = v;
    }
    if (s.temp) {
      const v = optionalU32(s, fn.nvmlDeviceGetTemperature(s.dev, NVML_TEMPERATURE_GPU, u32), "nvmlDeviceGetTemperature");
      if (v !== undefined) r.tempC = v;
    }
    return r;
  }

  function sampleSync(): GpuReading[] {
    if (closed) throw new NvmlError(NvmlReturn.UNINITIALIZED, "sample", { detail: "source is closed" });
    const out: GpuReading[] = [];
    for (const s of states) {
      if (s.lost) continue;
      try {
        out.push(readGpu(s));
      } catch (err) {
        fail(s, err);
      }
    }
    stats.samples++;
    return out;
  }

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
      let driverVersion: string | undefined;
      try {
        driverVersion = readDriverVersion(binding);
      } catch {
        driverVersion = undefined; // optional in the inventory
      }
      return driverVersion === undefined ? { gpus } : { gpus, driverVersion };
    },
    async sample() {
      return sampleSync();
    },
    stats(): NvmlSourceStats {
      return {
        ...stats,
        lostGpus: states.filter((s) => s.lost).map((s) => s.gpu),
        gpus: states.map((s) => ({
          gpu: s.gpu, uuid: s.uuid, lost: s.lost, power: s.instant ? "instant" : "average",
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
