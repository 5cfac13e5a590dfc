import test from "ava";
import { JoulestreamError, isRetryable, systemClock } from "../shared/mod.ts";
import type { ErrorCode } from "../shared/mod.ts";
import { createNvmlSource, NvmlError, NvmlReturn, nvmlReturnName, resolveNvmlLibraryPath } from "../services/agent/nvml/mod.ts";
import { fakeNvmlCopy, withFakeNvmlEnv } from "./helpers/fake-nvml.ts";

const clock = systemClock();

test("nvml errors - return codes carry their nvml.h values", (t) => {
  t.like(NvmlReturn, {
    UNINITIALIZED: 1, INVALID_ARGUMENT: 2, NOT_SUPPORTED: 3, NO_PERMISSION: 4, NOT_FOUND: 6, INSUFFICIENT_SIZE: 7,
    DRIVER_NOT_LOADED: 9, TIMEOUT: 10, LIBRARY_NOT_FOUND: 12, FUNCTION_NOT_FOUND: 13, GPU_IS_LOST: 15,
    RESET_REQUIRED: 16, LIB_RM_VERSION_MISMATCH: 18, IN_USE: 19, NO_DATA: 21, ARGUMENT_VERSION_MISMATCH: 25,
    NOT_READY: 27, GPU_NOT_FOUND: 28, UNKNOWN: 999,
  });
  t.is(nvmlReturnName(15), "GPU_IS_LOST");
  t.is(nvmlReturnName(12345), "UNKNOWN");
});

test("nvml errors - each code maps to a typed, classified error", (t) => {
  const cases: [number, ErrorCode, boolean][] = [
    [NvmlReturn.NOT_SUPPORTED, "NOT_SUPPORTED", true],
    [NvmlReturn.NO_PERMISSION, "PERMISSION", true],
    [NvmlReturn.GPU_IS_LOST, "UNAVAILABLE", true],
    [NvmlReturn.NOT_FOUND, "NOT_FOUND", true],
    [NvmlReturn.LIB_RM_VERSION_MISMATCH, "CONFIG", true],
    [NvmlReturn.DRIVER_NOT_LOADED, "UNAVAILABLE", false],
    [NvmlReturn.TIMEOUT, "TIMEOUT", false],
    [NvmlReturn.IN_USE, "UNAVAILABLE", false],
    [NvmlReturn.UNKNOWN, "INTERNAL", false],
  ];
  for (const [nvmlCode, code, permanent] of cases) {
    const e = new NvmlError(nvmlCode, "nvmlDeviceGetPowerUsage", { gpu: 2 });
    t.true(e instanceof JoulestreamError);
    t.is(e.name, "NvmlError");
    t.is(e.nvmlCode, nvmlCode);
    t.is(e.code, code, nvmlReturnName(nvmlCode));
    t.is(e.permanent, permanent, nvmlReturnName(nvmlCode));
    t.is(isRetryable(e), !permanent);
    t.is(e.gpu, 2);
    t.regex(e.message, new RegExp(`nvmlDeviceGetPowerUsage \\(gpu 2\\): NVML_ERROR_${nvmlReturnName(nvmlCode)} \\(${nvmlCode}\\)`));
  }
});

test("nvml errors - init failure from the library becomes a typed error with NVML's own string", async (t) => {
  const libraryPath = await fakeNvmlCopy();
  const open = (code: number) => withFakeNvmlEnv({ INIT_ERROR: code }, () => createNvmlSource({ clock, libraryPath }));
  const notLoaded = t.throws(() => open(9), { instanceOf: NvmlError });
  t.is(notLoaded.nvmlName, "DRIVER_NOT_LOADED");
  t.false(notLoaded.permanent);
  t.regex(notLoaded.message, /Driver Not Loaded/);
  const noPerm = t.throws(() => open(4), { instanceOf: NvmlError });
  t.is(noPerm.nvmlName, "NO_PERMISSION");
  t.true(noPerm.permanent);
});

test("nvml errors - a missing library is a permanent LIBRARY_NOT_FOUND naming the path", (t) => {
  const e = t.throws(() => createNvmlSource({ clock, libraryPath: "/nonexistent/libnvidia-ml.so.1" }), { instanceOf: NvmlError });
  t.is(e.nvmlName, "LIBRARY_NOT_FOUND");
  t.true(e.permanent);
  t.regex(e.message, /\/nonexistent\/libnvidia-ml\.so\.1/);
});

test("nvml errors - a library without NVML's symbols is FUNCTION_NOT_FOUND", (t) => {
  const e = t.throws(() => createNvmlSource({ clock, libraryPath: "libm.so.6" }), { instanceOf: NvmlError });
  t.is(e.nvmlName, "FUNCTION_NOT_FOUND");
  t.is(e.call, "nvmlInit_v2");
});

test("nvml errors - the library path comes from the option, else JOULESTREAM_NVML_LIBRARY, else libnvidia-ml.so.1", (t) => {
  t.is(resolveNvmlLibraryPath({ libraryPath: "/a.so", env: { JOULESTREAM_NVML_LIBRARY: "/b.so" } }), "/a.so");
  t.is(resolveNvmlLibraryPath({ env: { JOULESTREAM_NVML_LIBRARY: "/b.so" } }), "/b.so");
  t.is(resolveNvmlLibraryPath({ env: {} }), "libnvidia-ml.so.1");
});
