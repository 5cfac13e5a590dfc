import type { NvmlBinding, NvmlDevice } from "./bindings.ts";
import { readEnforcedPowerLimitMw } from "./device-info.ts";
import { NvmlError, NvmlReturn } from "./errors.ts";

/**
 * Clock and power-limit control. Bound now, used later by the opt-in clock control: every call
 * needs root, and whoever locks clocks or changes a limit must undo it, even when a run fails.
 * Each method throws NvmlError (NO_PERMISSION without root, NOT_SUPPORTED on consumer GPUs).
 */
export interface NvmlControl {
  lockGpuClocks(gpu: number, minMhz: number, maxMhz: number): void;
  resetGpuClocks(gpu: number): void;
  setPowerLimitMw(gpu: number, limitMw: number): void;
  /** The power limit in force (what a restore goes back to); undefined where the driver cannot say. */
  readPowerLimitMw(gpu: number): number | undefined;
}

export function createNvmlControl(binding: NvmlBinding, devices: readonly (NvmlDevice | undefined)[]): NvmlControl {
  const { fn, check } = binding;
  const dev = (gpu: number, call: string): NvmlDevice => {
    const d = devices[gpu];
    if (d === undefined) throw new NvmlError(NvmlReturn.INVALID_ARGUMENT, call, { gpu, detail: "no such GPU" });
    return d;
  };
  const missing = (call: string, gpu: number) => new NvmlError(NvmlReturn.FUNCTION_NOT_FOUND, call, { gpu });
  return {
    lockGpuClocks(gpu, minMhz, maxMhz) {
      const call = "nvmlDeviceSetGpuLockedClocks";
      if (!fn.nvmlDeviceSetGpuLockedClocks) throw missing(call, gpu);
      check(fn.nvmlDeviceSetGpuLockedClocks(dev(gpu, call), minMhz, maxMhz), call, gpu);
    },
    resetGpuClocks(gpu) {
      const call = "nvmlDeviceResetGpuLockedClocks";
      if (!fn.nvmlDeviceResetGpuLockedClocks) throw missing(call, gpu);
      check(fn.nvmlDeviceResetGpuLockedClocks(dev(gpu, call)), call, gpu);
    },
    readPowerLimitMw(gpu) {
      if (!fn.nvmlDeviceGetEnforcedPowerLimit) return undefined;
      return readEnforcedPowerLimitMw(binding, dev(gpu, "nvmlDeviceGetEnforcedPowerLimit"), gpu);
    },
    setPowerLimitMw(gpu, limitMw) {
      const call = "nvmlDeviceSetPowerManagementLimit";
      if (!fn.nvmlDeviceSetPowerManagementLimit) throw missing(call, gpu);
      check(fn.nvmlDeviceSetPowerManagementLimit(dev(gpu, call), limitMw), call, gpu);
    },
  };
}
