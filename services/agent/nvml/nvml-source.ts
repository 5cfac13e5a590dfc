import type { Clock, GpuInfo } from "../../../shared/mod.ts";
import type { GpuReading, PowerSource, SourceDescription } from "../power-source.ts";
import { runAsync, runSync } from "./calls.ts";
import { createNvmlControl, type NvmlControl } from "./control.ts";
import { readDriverVersion, readGpuInfo, readUuid } from "./device-info.ts";
import { NvmlError, NvmlReturn } from "./errors.ts";
import { createGpuReader, measurable, newGpuState, sampled, type GpuState } from "./gpu-reader.ts";
import { openNvml, type NvmlOpenOptions, type NvmlSession } from "./session.ts";

export interface NvmlSourceOptions extends NvmlOpenOptions {
  clock: Clock;
  /** NVML indices to sample (default: all). */
  gpus?: number[];
  /** Read instant power through NVML_FI_DEV_POWER_INSTANT where supported (default true). */
  instantPower?: boolean;
  /** Also read SM/memory clocks, utilization and temperature (default true). */
  extras?: boolean;
  /**
   * Read those at most this often, ms; readings in between carry the last values (default 1000;
   * 0: every sample). Power and the energy counter are read at every sample.
   */
  extrasIntervalMs?: number;
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
  const stats = { samples: 0, gpuErrors: 0, counterResets: 0 };
  const fail = (s: GpuState, err: unknown): void => {
    const e = err instanceof NvmlError ? err : new NvmlError(NvmlReturn.UNKNOWN, "sample", { gpu: s.gpu, cause: err });
    if (s.lost) return;
    s.errors++;
    stats.gpuErrors++;
    if (e.nvmlCode === NvmlReturn.GPU_IS_LOST) s.lost = true;
    opts.onGpuError?.(s.gpu, e, !sampled(s));
  };
  /** Selected GPUs NVML gave no handle for: lost from the start. */
  const noHandle: number[] = [];
  let states: GpuState[];
  try {
    states = openGpus(session, opts, fail, (gpu, err) => {
      noHandle.push(gpu);
      stats.gpuErrors++;
      opts.onGpuError?.(gpu, err, true);
    });
  } catch (err) {
    session.close();
    throw err;
  }
  const { readGpu } = createGpuReader({
    binding,
    clock: opts.clock,
    onCounterStuck: opts.onCounterStuck,
    extrasIntervalMs: opts.extrasIntervalMs ?? 1000,
    onCounterReset(gpu, previousMj, currentMj) {
      stats.counterResets++;
      opts.onCounterReset?.(gpu, previousMj, currentMj);
    },
  });

  let closed = false;
  let calls: "sync" | "async" = opts.calls === "async" ? "async" : "sync";
  const slowMs = opts.slowSampleMs ?? 5;
  const slowNeeded = opts.slowSamples ?? 3;
  let slowStreak = 0;

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
    control: rereadingExtras(createNvmlControl(binding, session.devices), (gpu) => states.find((s) => s.gpu === gpu)),
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

/**
 * The state of each selected GPU, named by its UUID. A GPU NVML gave no handle for goes to
 * `noHandle` (lost from the start); an index past the last GPU throws.
 */
/**
 * Control that changes a GPU's clocks makes its next reading read the clocks again, rather than
 * carry for up to `extrasIntervalMs` the values from before the change.
 */
function rereadingExtras(control: NvmlControl, state: (gpu: number) => GpuState | undefined): NvmlControl {
  const reread = (gpu: number) => {
    const s = state(gpu);
    if (s) s.extrasAtMs = Number.NEGATIVE_INFINITY;
  };
  return {
    ...control,
    lockGpuClocks(gpu, minMhz, maxMhz) {
      control.lockGpuClocks(gpu, minMhz, maxMhz);
      reread(gpu);
    },
    resetGpuClocks(gpu) {
      control.resetGpuClocks(gpu);
      reread(gpu);
    },
    setPowerLimitMw(gpu, limitMw) {
      control.setPowerLimitMw(gpu, limitMw);
      reread(gpu);
    },
  };
}

function openGpus(session: NvmlSession, opts: NvmlSourceOptions, fail: (s: GpuState, err: unknown) => void, noHandle: (gpu: number, err: NvmlError) => void): GpuState[] {
  const { binding } = session;
  const indices = opts.gpus ?? session.devices.map((_, i) => i);
  const states: GpuState[] = [];
  for (const gpu of indices) {
    if (gpu >= session.devices.length) throw new NvmlError(NvmlReturn.INVALID_ARGUMENT, "createNvmlSource", { gpu, detail: `no GPU ${gpu} (${session.devices.length} present)` });
    const dev = session.devices[gpu];
    if (dev === undefined) {
      noHandle(gpu, session.unavailable.find((e) => e.gpu === gpu)!);
      continue;
    }
    const state = newGpuState(gpu, dev, binding.fn, { instantPower: opts.instantPower ?? true, extras: opts.extras ?? true });
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
  return states;
}
