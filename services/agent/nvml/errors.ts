import { JoulestreamError } from "../../../shared/mod.ts";
import type { ErrorCode } from "../../../shared/mod.ts";

/** nvmlReturn_t values, as in nvml.h. */
export const NVML_SUCCESS = 0;
export const NvmlReturn = {
  UNINITIALIZED: 1,
  INVALID_ARGUMENT: 2,
  NOT_SUPPORTED: 3,
  NO_PERMISSION: 4,
  ALREADY_INITIALIZED: 5,
  NOT_FOUND: 6,
  INSUFFICIENT_SIZE: 7,
  INSUFFICIENT_POWER: 8,
  DRIVER_NOT_LOADED: 9,
  TIMEOUT: 10,
  IRQ_ISSUE: 11,
  LIBRARY_NOT_FOUND: 12,
  FUNCTION_NOT_FOUND: 13,
  CORRUPTED_INFOROM: 14,
  GPU_IS_LOST: 15,
  RESET_REQUIRED: 16,
  OPERATING_SYSTEM: 17,
  LIB_RM_VERSION_MISMATCH: 18,
  IN_USE: 19,
  MEMORY: 20,
  NO_DATA: 21,
  VGPU_ECC_NOT_SUPPORTED: 22,
  INSUFFICIENT_RESOURCES: 23,
  FREQ_NOT_SUPPORTED: 24,
  ARGUMENT_VERSION_MISMATCH: 25,
  DEPRECATED: 26,
  NOT_READY: 27,
  GPU_NOT_FOUND: 28,
  INVALID_STATE: 29,
  RESET_TYPE_NOT_SUPPORTED: 30,
  UNKNOWN: 999,
} as const;
export type NvmlReturnName = keyof typeof NvmlReturn;

const nameOf = new Map<number, NvmlReturnName>(Object.entries(NvmlReturn).map(([k, v]) => [v, k as NvmlReturnName]));

/**
 * How each return code is classified. Retryable: the condition can clear by itself (driver still
 * loading, device busy, timeout). Permanent: asking again gives the same answer (unsupported on
 * this device, missing permission, lost GPU, version mismatch).
 */
const CLASS: Record<NvmlReturnName, { code: ErrorCode; permanent: boolean }> = {
  UNINITIALIZED: { code: "INTERNAL", permanent: true },
  INVALID_ARGUMENT: { code: "INTERNAL", permanent: true },
  NOT_SUPPORTED: { code: "NOT_SUPPORTED", permanent: true },
  NO_PERMISSION: { code: "PERMISSION", permanent: true },
  ALREADY_INITIALIZED: { code: "INTERNAL", permanent: true },
  NOT_FOUND: { code: "NOT_FOUND", permanent: true },
  INSUFFICIENT_SIZE: { code: "INTERNAL", permanent: true },
  INSUFFICIENT_POWER: { code: "UNAVAILABLE", permanent: true },
  DRIVER_NOT_LOADED: { code: "UNAVAILABLE", permanent: false },
  TIMEOUT: { code: "TIMEOUT", permanent: false },
  IRQ_ISSUE: { code: "UNAVAILABLE", permanent: false },
  LIBRARY_NOT_FOUND: { code: "NOT_FOUND", permanent: true },
  FUNCTION_NOT_FOUND: { code: "NOT_SUPPORTED", permanent: true },
  CORRUPTED_INFOROM: { code: "UNAVAILABLE", permanent: true },
  GPU_IS_LOST: { code: "UNAVAILABLE", permanent: true },
  RESET_REQUIRED: { code: "UNAVAILABLE", permanent: true },
  OPERATING_SYSTEM: { code: "PERMISSION", permanent: true },
  LIB_RM_VERSION_MISMATCH: { code: "CONFIG", permanent: true },
  IN_USE: { code: "UNAVAILABLE", permanent: false },
  MEMORY: { code: "UNAVAILABLE", permanent: false },
  NO_DATA: { code: "UNAVAILABLE", permanent: false },
  VGPU_ECC_NOT_SUPPORTED: { code: "NOT_SUPPORTED", permanent: true },
  INSUFFICIENT_RESOURCES: { code: "UNAVAILABLE", permanent: false },
  FREQ_NOT_SUPPORTED: { code: "NOT_SUPPORTED", permanent: true },
  ARGUMENT_VERSION_MISMATCH: { code: "NOT_SUPPORTED", permanent: true },
  DEPRECATED: { code: "NOT_SUPPORTED", permanent: true },
  NOT_READY: { code: "UNAVAILABLE", permanent: false },
  GPU_NOT_FOUND: { code: "NOT_FOUND", permanent: true },
  INVALID_STATE: { code: "UNAVAILABLE", permanent: false },
  RESET_TYPE_NOT_SUPPORTED: { code: "NOT_SUPPORTED", permanent: true },
  UNKNOWN: { code: "INTERNAL", permanent: false },
};

/** The name of an nvmlReturn_t value, e.g. 15 → "GPU_IS_LOST"; codes this build does not know → "UNKNOWN". */
export function nvmlReturnName(code: number): NvmlReturnName {
  return nameOf.get(code) ?? "UNKNOWN";
}

/**
 * An NVML call that did not return NVML_SUCCESS. `nvmlCode` is the raw nvmlReturn_t, `nvmlName`
 * its nvml.h name without the NVML_ERROR_ prefix; `gpu` is set for device calls.
 * Branch on `nvmlName` / `nvmlCode`, never on the message.
 */
export class NvmlError extends JoulestreamError {
  readonly nvmlCode: number;
  readonly nvmlName: NvmlReturnName;
  readonly call: string;
  readonly gpu: number | undefined;
  constructor(nvmlCode: number, call: string, opts: { gpu?: number; detail?: string; cause?: unknown } = {}) {
    const nvmlName = nvmlReturnName(nvmlCode);
    const cls = CLASS[nvmlName];
    const where = opts.gpu === undefined ? call : `${call} (gpu ${opts.gpu})`;
    super(cls.code, `${where}: NVML_ERROR_${nvmlName} (${nvmlCode})${opts.detail ? `: ${opts.detail}` : ""}`, {
      permanent: cls.permanent,
      cause: opts.cause,
    });
    this.nvmlCode = nvmlCode;
    this.nvmlName = nvmlName;
    this.call = call;
    this.gpu = opts.gpu;
  }
}

export function isNvmlError(err: unknown, name?: NvmlReturnName): err is NvmlError {
  return err instanceof NvmlError && (name === undefined || err.nvmlName === name);
}
