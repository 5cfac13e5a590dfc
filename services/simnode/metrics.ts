import { createRng, hash32 } from "./rng.ts";
import type { SimNode } from "./node.ts";

/**
 * DCGM-exporter-style telemetry for the simulated node: same metric names, units, HELP/TYPE lines
 * and labels as dcgm-exporter's default counters, so the agent reads it through its production path.
 * Power is the average over the interval since the previous scrape (like NVML's 1-second average on
 * Hopper), computed from the energy counter, so power and energy always agree.
 */
export interface GpuTelemetry {
  /** Renders /metrics at simulated time `tMs` (the node must be advanced to `tMs`). */
  render(tMs: number): string;
}

/** GPU temperature: ambient + thermal resistance × power, first-order lag. H100 SXM runs ~30 °C idle, 65–75 °C near TDP. */
const AMBIENT_C = 28;
const THERMAL_C_PER_W = 0.065;
const THERMAL_TAU_MS = 30_000;
/** Shortest interval over which power is averaged; shorter scrapes report the instantaneous level. */
const MIN_AVG_INTERVAL_MS = 20;

const FIELDS = [
  ["DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."],
  ["DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."],
  ["DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."],
  ["DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."],
  ["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."],
  ["DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."],
  ["DCGM_FI_DEV_POWER_MGMT_LIMIT", "gauge", "Power management limit (in W)."],
] as const;

/** A stable, UUID-shaped id per (seed, GPU index), like "GPU-1b2c…". */
export function gpuUuid(seed: number, gpu: number): string {
  const rng = createRng(hash32(`gpu-${gpu}`, seed));
  const h = () => Math.floor(rng.next() * 2 ** 32).toString(16).padStart(8, "0");
  const x = h() + h() + h() + h();
  return `GPU-${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

export function createGpuTelemetry(node: SimNode, opts: { seed: number; hostname: string }): GpuTelemetry {
  const last = Array.from({ length: node.gpuCount }, () => ({ tMs: 0, energyMj: 0, busyMs: 0, tempC: AMBIENT_C + THERMAL_C_PER_W * node.powerW(0), powerW: node.powerW(0), utilPct: 0 }));
  const esc = (s: string) => s.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
  const labels = Array.from({ length: node.gpuCount }, (_, g) => `{gpu="${g}",UUID="${gpuUuid(opts.seed, g)}",device="nvidia${g}",modelName="${esc(node.gpu.name)}",Hostname="${esc(opts.hostname)}"}`);

  return {
    render(tMs) {
      const values: number[][] = [];
      const knobs = node.knobs();
      for (let g = 0; g < node.gpuCount; g++) {
        const l = last[g]!;
        const e = node.energyMj(g, tMs);
        const busy = node.busyMs(g, tMs);
        const dt = tMs - l.tMs;
        if (dt >= MIN_AVG_INTERVAL_MS) {
          l.powerW = (e - l.energyMj) / dt; // mJ/ms = W
          l.utilPct = Math.round((100 * (busy - l.busyMs)) / dt);
          const target = AMBIENT_C + THERMAL_C_PER_W * l.powerW;
          l.tempC += (target - l.tempC) * (1 - Math.exp(-dt / THERMAL_TAU_MS));
          l.tMs = tMs;
          l.energyMj = e;
          l.busyMs = busy;
        } else if (dt > 0 || tMs === 0) {
          l.powerW = node.powerW(g);
        }
        values.push([node.smClockMhz(g), node.gpu.memClockMhz, Math.round(l.tempC), l.powerW, e, Math.min(100, Math.max(0, l.utilPct)), knobs.powerLimitW]);
      }
      const out: string[] = [];
      FIELDS.forEach(([name, type, help], f) => {
        out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
        for (let g = 0; g < node.gpuCount; g++) {
          const v = values[g]![f]!;
          out.push(`${name}${labels[g]} ${name === "DCGM_FI_DEV_POWER_USAGE" ? v.toFixed(3) : name === "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" ? v.toFixed(3) : String(Math.round(v))}`);
        }
      });
      return out.join("\n") + "\n";
    },
  };
}
