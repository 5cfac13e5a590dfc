import type { GpuInfo } from "../../../shared/mod.ts";
import {
  NVML_DEVICE_NAME_V2_BUFFER_SIZE,
  NVML_DEVICE_UUID_V2_BUFFER_SIZE,
  NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE,
  cString,
  need,
  type NvmlBinding,
  type NvmlDevice,
} from "./bindings.ts";
import { NvmlError, NvmlReturn } from "./errors.ts";

const BYTES_PER_MB = 1024 * 1024;
/** Enough for any GPU's clock tables (H100: 1 memory clock, ~80 graphics clocks). */
const MAX_CLOCKS = 512;

export function readDriverVersion(b: NvmlBinding): string {
  const buf = Buffer.alloc(NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE);
  b.check(need(b, "nvmlSystemGetDriverVersion")(buf, buf.length), "nvmlSystemGetDriverVersion");
  return cString(buf);
}

export function readUuid(b: NvmlBinding, dev: NvmlDevice, gpu: number): string {
  const buf = Buffer.alloc(NVML_DEVICE_UUID_V2_BUFFER_SIZE);
  b.check(need(b, "nvmlDeviceGetUUID")(dev, buf, buf.length), "nvmlDeviceGetUUID", gpu);
  return cString(buf);
}

export function readName(b: NvmlBinding, dev: NvmlDevice, gpu: number): string {
  const buf = Buffer.alloc(NVML_DEVICE_NAME_V2_BUFFER_SIZE);
  b.check(need(b, "nvmlDeviceGetName")(dev, buf, buf.length), "nvmlDeviceGetName", gpu);
  return cString(buf);
}

/**
 * SM (graphics) clocks this GPU can be locked to, MHz, highest first, as NVML lists them for the
 * highest supported memory clock (the one a serving GPU runs at).
 */
export function readSupportedSmClocks(b: NvmlBinding, dev: NvmlDevice, gpu: number): number[] {
  const count = new Uint32Array(1);
  const clocks = new Uint32Array(MAX_CLOCKS);
  count[0] = MAX_CLOCKS;
  b.check(need(b, "nvmlDeviceGetSupportedMemoryClocks")(dev, count, clocks), "nvmlDeviceGetSupportedMemoryClocks", gpu);
  if (count[0] === 0) return [];
  const memMhz = Math.max(...clocks.subarray(0, count[0]));
  count[0] = MAX_CLOCKS;
  b.check(need(b, "nvmlDeviceGetSupportedGraphicsClocks")(dev, memMhz, count, clocks), "nvmlDeviceGetSupportedGraphicsClocks", gpu);
  return [...clocks.subarray(0, count[0])].sort((x, y) => y - x);
}

/** The power limit in force, mW; NvmlError (FUNCTION_NOT_FOUND where the library lacks the call). */
export function readEnforcedPowerLimitMw(b: NvmlBinding, dev: NvmlDevice, gpu: number): number {
  const out = new Uint32Array(1);
  b.check(need(b, "nvmlDeviceGetEnforcedPowerLimit")(dev, out), "nvmlDeviceGetEnforcedPowerLimit", gpu);
  return out[0]!;
}

/**
 * Inventory of one GPU. Optional fields that NVML cannot give are left out; GPU_IS_LOST (or any
 * error on the UUID, which identifies the GPU) is thrown to the caller.
 */
export function readGpuInfo(b: NvmlBinding, dev: NvmlDevice, gpu: number, uuid?: string): GpuInfo {
  const info: GpuInfo = { index: gpu, uuid: uuid ?? readUuid(b, dev, gpu), name: optional(() => readName(b, dev, gpu)) ?? "unknown" };
  const u32 = new Uint32Array(2);
  const limit = optional(() => readEnforcedPowerLimitMw(b, dev, gpu));
  if (limit !== undefined) info.powerLimitMw = limit;
  const constraints = optional(() => {
    const min = u32.subarray(0, 1);
    const max = u32.subarray(1, 2);
    b.check(need(b, "nvmlDeviceGetPowerManagementLimitConstraints")(dev, min, max), "nvmlDeviceGetPowerManagementLimitConstraints", gpu);
    return { minMw: min[0]!, maxMw: max[0]! };
  });
  if (constraints) {
    info.minPowerLimitMw = constraints.minMw;
    info.maxPowerLimitMw = constraints.maxMw;
  }
  const clocks = optional(() => readSupportedSmClocks(b, dev, gpu));
  if (clocks && clocks.length > 0) info.supportedSmClocksMhz = clocks;
  const memTotal = optional(() => {
    const mem = new BigUint64Array(3); // nvmlMemory_t { total, free, used } in bytes
    b.check(need(b, "nvmlDeviceGetMemoryInfo")(dev, mem), "nvmlDeviceGetMemoryInfo", gpu);
    return Math.round(Number(mem[0]) / BYTES_PER_MB);
  });
  if (memTotal !== undefined) info.memTotalMb = memTotal;
  return info;
}

/** Runs an optional query: undefined when NVML says no, except GPU_IS_LOST, which is rethrown. */
function optional<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (err) {
    if (err instanceof NvmlError && err.nvmlCode !== NvmlReturn.GPU_IS_LOST) return undefined;
    throw err;
  }
}
