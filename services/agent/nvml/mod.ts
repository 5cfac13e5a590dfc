/** NVML through koffi: the power source, the session, clock control and typed errors. */
export { createNvmlSource } from "./nvml-source.ts";
export type { NvmlSource, NvmlSourceOptions, NvmlSourceStats, NvmlGpuStats } from "./nvml-source.ts";
export { openNvml, resolveNvmlLibraryPath } from "./session.ts";
export type { NvmlSession, NvmlOpenOptions } from "./session.ts";
export { createNvmlControl } from "./control.ts";
export type { NvmlControl } from "./control.ts";
export { NvmlError, NvmlReturn, NVML_SUCCESS, isNvmlError, nvmlReturnName } from "./errors.ts";
export type { NvmlReturnName } from "./errors.ts";
export { DEFAULT_NVML_LIBRARY, NVML_LIBRARY_ENV, NVML_FI_DEV_POWER_INSTANT, FIELD_VALUE_SIZE } from "./bindings.ts";
export { readGpuInfo, readDriverVersion } from "./device-info.ts";
