import koffi from "koffi";
import { NVML_SUCCESS, NvmlError, NvmlReturn } from "./errors.ts";
import { errorMessage } from "../../../shared/errors.ts";

/**
 * The NVML C API through koffi: each function bound with its nvml.h prototype. Out-parameters are
 * declared `void *` so callers pass pre-allocated typed arrays / Buffers (no per-call allocation);
 * `nvmlDevice_t` handles are opaque pointers, which koffi 3 represents as bigint.
 */
export const DEFAULT_NVML_LIBRARY = "libnvidia-ml.so.1";
export const NVML_LIBRARY_ENV = "JOULESTREAM_NVML_LIBRARY";

export const NVML_FI_DEV_POWER_AVERAGE = 185;
export const NVML_FI_DEV_POWER_INSTANT = 186;
export const NVML_CLOCK_GRAPHICS = 0;
export const NVML_CLOCK_SM = 1;
export const NVML_CLOCK_MEM = 2;
export const NVML_TEMPERATURE_GPU = 0;
/** Buffer sizes from nvml.h (the _V2 ones are the larger, current sizes). */
export const NVML_DEVICE_NAME_V2_BUFFER_SIZE = 96;
export const NVML_DEVICE_UUID_V2_BUFFER_SIZE = 96;
export const NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE = 80;

/**
 * nvmlFieldValue_t (40 bytes, natural alignment): fieldId u32 @0, scopeId u32 @4,
 * timestamp i64 @8 (µs since 1970), latencyUsec i64 @16, valueType u32 @24, nvmlReturn u32 @28,
 * value (union of double / u32 / u64 / i64 / i32 / u16) @32.
 */
export const FIELD_VALUE_SIZE = 40;
export const FieldValueOffset = { fieldId: 0, scopeId: 4, timestamp: 8, latencyUsec: 16, valueType: 24, nvmlReturn: 28, value: 32 } as const;
/** nvmlValueType_t */
export const NvmlValueType = { DOUBLE: 0, UNSIGNED_INT: 1, UNSIGNED_LONG: 2, UNSIGNED_LONG_LONG: 3, SIGNED_LONG_LONG: 4, SIGNED_INT: 5, UNSIGNED_SHORT: 6 } as const;

export type NvmlDevice = bigint & { readonly __nvmlDevice: unique symbol };
type Out = Uint32Array | BigUint64Array | Buffer;
type Fn<A extends unknown[]> = (...args: A) => number;

/**
 * Raw functions: each returns the nvmlReturn_t. Only what sampling cannot do without is required;
 * the rest is `undefined` where the library lacks the symbol (old drivers, vGPU guests, minimal
 * builds), and callers treat that as NOT_SUPPORTED.
 */
export interface NvmlFunctions {
  nvmlInit_v2: Fn<[]>;
  nvmlShutdown: Fn<[]>;
  nvmlDeviceGetCount_v2: Fn<[Uint32Array]>;
  nvmlDeviceGetHandleByIndex_v2: Fn<[number, [NvmlDevice | null]]>;
  nvmlDeviceGetPowerUsage: Fn<[NvmlDevice, Uint32Array]>;
  nvmlErrorString?: (code: number) => string;
  nvmlSystemGetDriverVersion?: Fn<[Buffer, number]>;
  nvmlDeviceGetName?: Fn<[NvmlDevice, Buffer, number]>;
  nvmlDeviceGetUUID?: Fn<[NvmlDevice, Buffer, number]>;
  nvmlDeviceGetFieldValues?: Fn<[NvmlDevice, number, Buffer]>;
  nvmlDeviceGetTotalEnergyConsumption?: Fn<[NvmlDevice, BigUint64Array]>;
  nvmlDeviceGetClockInfo?: Fn<[NvmlDevice, number, Uint32Array]>;
  nvmlDeviceGetUtilizationRates?: Fn<[NvmlDevice, Uint32Array]>;
  nvmlDeviceGetTemperature?: Fn<[NvmlDevice, number, Uint32Array]>;
  nvmlDeviceGetMemoryInfo?: Fn<[NvmlDevice, BigUint64Array]>;
  nvmlDeviceGetEnforcedPowerLimit?: Fn<[NvmlDevice, Uint32Array]>;
  nvmlDeviceGetPowerManagementLimitConstraints?: Fn<[NvmlDevice, Uint32Array, Uint32Array]>;
  nvmlDeviceGetSupportedMemoryClocks?: Fn<[NvmlDevice, Uint32Array, Uint32Array]>;
  nvmlDeviceGetSupportedGraphicsClocks?: Fn<[NvmlDevice, number, Uint32Array, Uint32Array]>;
  nvmlDeviceSetGpuLockedClocks?: Fn<[NvmlDevice, number, number]>;
  nvmlDeviceResetGpuLockedClocks?: Fn<[NvmlDevice]>;
  nvmlDeviceSetPowerManagementLimit?: Fn<[NvmlDevice, number]>;
}

/**
 * Prototypes as in nvml.h, with out-pointers as `void *` (see above). A required entry lists the
 * versioned symbol first and the legacy one after (nvml.h maps nvmlInit to nvmlInit_v2, and so on);
 * the first the library has is bound, under the first name.
 */
const REQUIRED: readonly (readonly string[])[] = [
  ["int nvmlInit_v2(void)", "int nvmlInit(void)"],
  ["int nvmlShutdown(void)"],
  ["int nvmlDeviceGetCount_v2(void *deviceCount)", "int nvmlDeviceGetCount(void *deviceCount)"],
  ["int nvmlDeviceGetHandleByIndex_v2(unsigned int index, _Out_ nvmlDevice_t *device)", "int nvmlDeviceGetHandleByIndex(unsigned int index, _Out_ nvmlDevice_t *device)"],
  ["int nvmlDeviceGetPowerUsage(nvmlDevice_t device, void *power)"],
];
/** Bound only if present. */
const OPTIONAL = [
  "const char *nvmlErrorString(int result)",
  "int nvmlSystemGetDriverVersion(_Out_ char *version, unsigned int length)",
  "int nvmlDeviceGetName(nvmlDevice_t device, _Out_ char *name, unsigned int length)",
  "int nvmlDeviceGetUUID(nvmlDevice_t device, _Out_ char *uuid, unsigned int length)",
  "int nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, void *clock)",
  "int nvmlDeviceGetUtilizationRates(nvmlDevice_t device, void *utilization)",
  "int nvmlDeviceGetTemperature(nvmlDevice_t device, int sensorType, void *temp)",
  "int nvmlDeviceGetMemoryInfo(nvmlDevice_t device, void *memory)",
  "int nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, void *limit)",
  "int nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t device, void *minLimit, void *maxLimit)",
  "int nvmlDeviceGetSupportedMemoryClocks(nvmlDevice_t device, void *count, void *clocksMHz)",
  "int nvmlDeviceGetSupportedGraphicsClocks(nvmlDevice_t device, unsigned int memoryClockMHz, void *count, void *clocksMHz)",
  "int nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, void *values)",
  "int nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, void *energy)",
  "int nvmlDeviceSetGpuLockedClocks(nvmlDevice_t device, unsigned int minGpuClockMHz, unsigned int maxGpuClockMHz)",
  "int nvmlDeviceResetGpuLockedClocks(nvmlDevice_t device)",
  "int nvmlDeviceSetPowerManagementLimit(nvmlDevice_t device, unsigned int limit)",
];

// koffi types are registered process-wide by name; declare once.
let deviceType: ReturnType<typeof koffi.pointer> | undefined;
function declareTypes(): void {
  deviceType ??= koffi.pointer("nvmlDevice_t", koffi.opaque("nvmlDevice_st"));
}

function fnName(proto: string): string {
  const m = /\s\**(\w+)\(/.exec(proto);
  if (!m?.[1]) throw new Error(`bad prototype ${proto}`);
  return m[1];
}

export interface NvmlBinding {
  readonly path: string;
  readonly fn: NvmlFunctions;
  /** Throws NvmlError when `code` is not NVML_SUCCESS. */
  check(code: number, call: string, gpu?: number): void;
  unload(): void;
}

/** dlopen()s the library and binds every function. Throws NvmlError LIBRARY_NOT_FOUND / FUNCTION_NOT_FOUND. */
export function loadNvml(path: string): NvmlBinding {
  declareTypes();
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load(path);
  } catch (err) {
    throw new NvmlError(NvmlReturn.LIBRARY_NOT_FOUND, "dlopen", { detail: `${path}: ${errorMessage(err)}`, cause: err });
  }
  const bind = (proto: string): unknown => {
    try {
      return lib.func(proto);
    } catch {
      return undefined; // absent symbol
    }
  };
  const fn: Record<string, unknown> = {};
  for (const protos of REQUIRED) {
    const name = fnName(protos[0]!);
    for (const proto of protos) fn[name] ??= bind(proto);
    if (fn[name] === undefined) {
      lib.unload();
      throw new NvmlError(NvmlReturn.FUNCTION_NOT_FOUND, name, { detail: `${path} exports none of ${protos.map(fnName).join(", ")}` });
    }
  }
  for (const proto of OPTIONAL) {
    const f = bind(proto);
    if (f !== undefined) fn[fnName(proto)] = f;
  }
  const functions = fn as unknown as NvmlFunctions;
  let loaded = true;
  return {
    path,
    fn: functions,
    check(code, call, gpu) {
      if (code === NVML_SUCCESS) return;
      let detail: string | undefined;
      try {
        detail = functions.nvmlErrorString?.(code);
      } catch {
        detail = undefined;
      }
      throw new NvmlError(code, call, { gpu, detail });
    },
    unload() {
      if (!loaded) return;
      loaded = false;
      lib.unload();
    },
  };
}

/**
 * A function the library may lack: bound, or NvmlError FUNCTION_NOT_FOUND, which readers of optional
 * facts take as "not supported".
 */
export function need<K extends keyof NvmlFunctions>(b: NvmlBinding, name: K): NonNullable<NvmlFunctions[K]> {
  const f = b.fn[name];
  if (f === undefined) throw new NvmlError(NvmlReturn.FUNCTION_NOT_FOUND, name, { detail: `${b.path} has no ${name}` });
  return f as NonNullable<NvmlFunctions[K]>;
}

/** A NUL-terminated C string out of a Buffer. */
export function cString(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.toString("utf8", 0, end < 0 ? buf.length : end);
}
