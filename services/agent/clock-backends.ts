import type { NvmlControl } from "./nvml/control.ts";

/** What clock control changes GPUs through: NVML on a real node, the simnode's admin endpoint in a lab. */
export interface ClockBackend {
  lockSmClock(gpu: number, minMhz: number, maxMhz: number): Promise<void>;
  resetSmClock(gpu: number): Promise<void>;
  setPowerLimitMw(gpu: number, limitMw: number): Promise<void>;
  /** The power limit in force now, where the backend can read it (what a restore goes back to). */
  readPowerLimitMw?(gpu: number): Promise<number | undefined>;
}

/** NVML control (synchronous FFI) as a ClockBackend. */
export function nvmlClockBackend(control: NvmlControl): ClockBackend {
  return {
    readPowerLimitMw: async (gpu) => control.readPowerLimitMw(gpu),
    lockSmClock: async (gpu, lo, hi) => control.lockGpuClocks(gpu, lo, hi),
    resetSmClock: async (gpu) => control.resetGpuClocks(gpu),
    setPowerLimitMw: async (gpu, mw) => control.setPowerLimitMw(gpu, mw),
  };
}

/**
 * The simulated node's admin endpoint as a ClockBackend (`POST /admin/config`, `/admin/reset-clocks`).
 * The simnode applies one SM clock and one power limit to all its GPUs, so a per-GPU call sets the
 * node's value; sweeps set all GPUs alike anyway.
 */
export function simnodeClockBackend(adminBaseUrl: string): ClockBackend {
  const post = async (path: string, body?: unknown) => {
    const res = await fetch(new URL(path, adminBaseUrl), { method: "POST", headers: { "content-type": "application/json" }, ...(body ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`simnode ${path}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
  };
  return {
    readPowerLimitMw: async () => {
      const res = await fetch(new URL("/admin/config", adminBaseUrl), { signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`simnode /admin/config: HTTP ${res.status}`);
      const w = ((await res.json()) as { powerLimitW?: number }).powerLimitW;
      return typeof w === "number" ? Math.round(w * 1000) : undefined;
    },
    lockSmClock: (_gpu, _lo, hi) => post("/admin/config", { smClockMhz: hi }),
    resetSmClock: () => post("/admin/reset-clocks"),
    setPowerLimitMw: (_gpu, mw) => post("/admin/config", { powerLimitW: mw / 1000 }),
  };
}
