import { RetryableError, type Clock, wToMw } from "../../shared/mod.ts";
import type { GpuInfo } from "../../shared/mod.ts";
import { parsePrometheusText } from "./prometheus.ts";
import type { GpuReading, PowerSource, SourceDescription } from "./power-source.ts";

/**
 * Reads GPUs from a DCGM exporter's Prometheus endpoint (and from the simulated node, which speaks
 * the same format). Field names and units are dcgm-exporter's: POWER_USAGE in W,
 * TOTAL_ENERGY_CONSUMPTION in mJ since driver load, clocks in MHz, GPU_UTIL in %.
 */
export interface DcgmSourceOptions {
  url: string;
  clock: Clock;
  kind?: "dcgm" | "sim";
  timeoutMs?: number;
}

export function createDcgmSource(opts: DcgmSourceOptions): PowerSource {
  const timeoutMs = opts.timeoutMs ?? 2000;
  let names = new Map<number, string>();

  async function scrape(): Promise<{ readings: GpuReading[]; text: string }> {
    let text: string;
    try {
      const res = await fetch(opts.url, { signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      text = await res.text();
    } catch (err) {
      throw new RetryableError("UNAVAILABLE", `cannot scrape ${opts.url}: ${(err as Error).message}`, err);
    }
    const tMs = opts.clock.nowMs();
    const byGpu = new Map<number, GpuReading>();
    for (const s of parsePrometheusText(text)) {
      if (!s.name.startsWith("DCGM_FI_")) continue;
      const gpu = Number(s.labels.gpu);
      if (!Number.isInteger(gpu)) continue;
      let r = byGpu.get(gpu);
      if (!r) {
        r = { gpu, uuid: s.labels.UUID ?? s.labels.uuid ?? `gpu-${gpu}`, tMs, powerMw: 0 };
        byGpu.set(gpu, r);
        if (s.labels.modelName) names.set(gpu, s.labels.modelName);
      }
      switch (s.name) {
        case "DCGM_FI_DEV_POWER_USAGE": r.powerMw = wToMw(s.value); break;
        case "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": r.energyMj = s.value; break;
        case "DCGM_FI_DEV_SM_CLOCK": r.smClockMhz = s.value; break;
        case "DCGM_FI_DEV_MEM_CLOCK": r.memClockMhz = s.value; break;
        case "DCGM_FI_DEV_GPU_UTIL": r.utilPct = s.value; break;
        case "DCGM_FI_DEV_GPU_TEMP": r.tempC = s.value; break;
      }
    }
    return { readings: [...byGpu.values()].sort((a, b) => a.gpu - b.gpu), text };
  }

  return {
    kind: opts.kind ?? "dcgm",
    async describe(): Promise<SourceDescription> {
      const { readings } = await scrape();
      const gpus: GpuInfo[] = readings.map((r) => ({ index: r.gpu, uuid: r.uuid, name: names.get(r.gpu) ?? "unknown" }));
      return { gpus };
    },
    async sample() {
      return (await scrape()).readings;
    },
    async close() {
      names = new Map();
    },
  };
}
