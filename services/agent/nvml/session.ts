import { DEFAULT_NVML_LIBRARY, NVML_LIBRARY_ENV, loadNvml, type NvmlBinding, type NvmlDevice } from "./bindings.ts";
import { NvmlError } from "./errors.ts";

/** An initialized NVML: the bound library, one handle per GPU index, and a close that runs once. */
export interface NvmlSession {
  readonly binding: NvmlBinding;
  /**
   * Handles by NVML index (the index NVML enumerates, which is what nvidia-smi shows); undefined
   * for a GPU NVML counts but gives no handle for (see `unavailable`).
   */
  readonly devices: readonly (NvmlDevice | undefined)[];
  /** Why each GPU without a handle has none (a GPU that fell off the bus: GPU_IS_LOST). */
  readonly unavailable: readonly NvmlError[];
  /** nvmlShutdown, then dlclose. Idempotent. */
  close(): void;
}

export interface NvmlOpenOptions {
  /** Path to libnvidia-ml; default: `env.JOULESTREAM_NVML_LIBRARY`, else `libnvidia-ml.so.1`. */
  libraryPath?: string;
  /** Where JOULESTREAM_NVML_LIBRARY is looked up (default process.env). */
  env?: Record<string, string | undefined>;
}

export function resolveNvmlLibraryPath(opts: NvmlOpenOptions = {}): string {
  const env = opts.env ?? process.env;
  return opts.libraryPath || env[NVML_LIBRARY_ENV] || DEFAULT_NVML_LIBRARY;
}

/**
 * Loads NVML and calls nvmlInit_v2. Throws NvmlError: LIBRARY_NOT_FOUND (permanent) where there is
 * no driver library, DRIVER_NOT_LOADED (retryable) while the kernel module is not up, and so on.
 */
export function openNvml(opts: NvmlOpenOptions = {}): NvmlSession {
  const binding = loadNvml(resolveNvmlLibraryPath(opts));
  const { fn, check } = binding;
  try {
    check(fn.nvmlInit_v2(), "nvmlInit_v2");
  } catch (err) {
    binding.unload();
    throw err;
  }
  let open = true;
  const close = () => {
    if (!open) return;
    open = false;
    try {
      fn.nvmlShutdown();
    } finally {
      binding.unload();
    }
  };
  try {
    const count = new Uint32Array(1);
    check(fn.nvmlDeviceGetCount_v2(count), "nvmlDeviceGetCount_v2");
    // One GPU without a handle does not stop the others from being measured.
    const devices: (NvmlDevice | undefined)[] = [];
    const unavailable: NvmlError[] = [];
    for (let i = 0; i < count[0]!; i++) {
      const out: [NvmlDevice | null] = [null];
      try {
        check(fn.nvmlDeviceGetHandleByIndex_v2(i, out), "nvmlDeviceGetHandleByIndex_v2", i);
        // nvmlDevice_t is opaque: NULL is a valid value where NVML answered SUCCESS (koffi passes it back as null).
        devices.push(out[0] as NvmlDevice);
      } catch (err) {
        if (!(err instanceof NvmlError)) throw err;
        devices.push(undefined);
        unavailable.push(err);
      }
    }
    return { binding, devices, unavailable, close };
  } catch (err) {
    close();
    throw err;
  }
}
