import type { GpuInfo } from "../../shared/mod.ts";

/** One reading of one GPU. Optional fields are absent where the source does not provide them. */
export interface GpuReading {
  gpu: number;
  uuid: string;
  /** When the reading was taken, epoch ms (sub-ms). */
  tMs: number;
  /** Power in mW. For NVML on Ampere+, instant power when available, else the 1-s average. */
  powerMw: number;
  /** Cumulative energy counter in mJ (NVML total energy since driver load / DCGM total energy). */
  energyMj?: number;
  smClockMhz?: number;
  memClockMhz?: number;
  utilPct?: number;
  tempC?: number;
}

export interface SourceDescription {
  gpus: GpuInfo[];
  /**
   * GPUs the node has that the source cannot read at all (no handle, lost): not in `gpus`, but part
   * of the node, so every window reports them missing.
   */
  unreadableGpus?: number[];
  driverVersion?: string;
}

/**
 * Where GPU power comes from: NVML (FFI to libnvidia-ml), a DCGM exporter's /metrics (which is
 * also how the simulated node is read), or a fake. One interface, chosen in main.ts.
 */
export interface PowerSource {
  readonly kind: "nvml" | "dcgm" | "sim" | "fake";
  describe(): Promise<SourceDescription>;
  /**
   * One reading per GPU that answered. A GPU that is lost is left out (and reported through
   * `onGpuError`), never turned into a zero or a crash.
   */
  sample(): Promise<GpuReading[]>;
  close(): Promise<void>;
}
