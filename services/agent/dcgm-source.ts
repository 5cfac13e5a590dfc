import { RetryableError, type Clock, wToMw } from "../../shared/mod.ts";
import type { GpuInfo } from "../../shared/mod.ts";
import { CounterPower, StandingCounter } from "../../shared/energy/mod.ts";
import { parsePrometheusText } from "./prometheus.ts";
import type { GpuReading, PowerSource, SourceDescription } from "./power-source.ts";
import { errorMessage } from "../../shared/errors.ts";

/**
 * Reads GPUs from a DCGM exporter's Prometheus endpoint (and from the simulated node, which speaks
 * the same format). Field names and units are dcgm-exporter's: POWER_USAGE in W,
 * TOTAL_ENERGY_CONSUMPTION in mJ since driver load, clocks in MHz, GPU_UTIL in %.
 *
 * A value that is not a finite, non-negative number (an exporter's NaN), or one of DCGM's blank
 * sentinels (a field the GPU does not support), counts as absent. A GPU whose exporter gives the
 * energy counter but no power gets power from the counter over the trailing second (its first such
 * reading is left out: the counter's baseline); a GPU with neither is left out of the sample.
 * Power is never made up.
 */
export interface DcgmSourceOptions {
  url: string;
  clock: Clock;
  kind?: "dcgm" | "sim";
  timeoutMs?: number;
}

/**
 * DCGM's "blank" values (not supported, not found, no data…) start at 2^47 for doubles
 * (DCGM_FP64_BLANK) and near 2^63 for int64s, and dcgm-exporter prints them as they are. No real
 * reading comes near: 2^47 mJ is six years of a 700-W GPU.
 */
const DCGM_BLANK = 2 ** 47;

/**
 * dcgm-exporter refreshes its fields every `-c` ms (30 s by default), and a scrape in between gets
 * the same values again. A counter that then jumps by seconds' worth of energy between two 100-ms
 * samples is put in the wrong window, and the analyzer takes such a jump as a glitch (over 2 kW) and
 * keeps only 100 ms of it. A counter that stands still this long while the GPU draws power is such
 * a slow one: it is left out from then on (power is integrated instead), as NVML's stuck counter is.
 */
const STALE_COUNTER_MS = 400;
/** Any power drawn meanwhile (1 mJ: a GPU at a few milliwatts for 400 ms). */
const STALE_COUNTER_MJ = 1;

export function createDcgmSource(opts: DcgmSourceOptions): PowerSource {
  const timeoutMs = opts.timeoutMs ?? 2000;
  let names = new Map<number, string>();
  const counterPower = new Map<number, CounterPower>();
  /** Per GPU: whether its counter stands still between the exporter's refreshes (then it is left out). */
  const standing = new Map<number, StandingCounter>();

  /** One scrape: the readings with power, and every GPU the exporter named, both by index. */
  async function scrape(): Promise<{ readings: GpuReading[]; gpus: { gpu: number; uuid: string }[] }> {
    let text: string;
    try {
      const res = await fetch(opts.url, { signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      text = await res.text();
    } catch (err) {
      throw new RetryableError("UNAVAILABLE", `cannot scrape ${opts.url}: ${errorMessage(err)}`, err);
    }
    const tMs = opts.clock.nowMs();
    const byGpu = new Map<number, Partial<GpuReading> & Pick<GpuReading, "gpu" | "uuid" | "tMs">>();
    for (const s of parsePrometheusText(text)) {
      if (!s.name.startsWith("DCGM_FI_")) continue;
      const gpu = Number(s.labels.gpu);
      if (!Number.isInteger(gpu) || gpu < 0) continue;
      let r = byGpu.get(gpu);
      if (!r) {
        r = { gpu, uuid: s.labels.UUID ?? s.labels.uuid ?? `gpu-${gpu}`, tMs };
        byGpu.set(gpu, r);
        if (s.labels.modelName) names.set(gpu, s.labels.modelName);
      }
      if (!Number.isFinite(s.value) || s.value < 0 || s.value >= DCGM_BLANK) continue;
      switch (s.name) {
        case "DCGM_FI_DEV_POWER_USAGE": r.powerMw = wToMw(s.value); break;
        case "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": r.energyMj = s.value; break;
        case "DCGM_FI_DEV_SM_CLOCK": r.smClockMhz = s.value; break;
        case "DCGM_FI_DEV_MEM_CLOCK": r.memClockMhz = s.value; break;
        case "DCGM_FI_DEV_GPU_UTIL": r.utilPct = s.value; break;
        case "DCGM_FI_DEV_GPU_TEMP": r.tempC = s.value; break;
      }
    }
    const gpus = [...byGpu.values()].sort((a, b) => a.gpu - b.gpu);
    const readings: GpuReading[] = [];
    for (const r of gpus) {
      if (r.energyMj !== undefined) {
        let cp = counterPower.get(r.gpu);
        if (!cp) counterPower.set(r.gpu, (cp = new CounterPower()));
        const fromCounter = cp.next(tMs, r.energyMj); // fed every scrape, so its span stays the last second
        if (r.powerMw === undefined) r.powerMw = fromCounter;
        else {
          let st = standing.get(r.gpu);
          if (!st) standing.set(r.gpu, (st = new StandingCounter(STALE_COUNTER_MS, STALE_COUNTER_MJ)));
          if (st.next(tMs, r.energyMj, r.powerMw)) delete r.energyMj;
        }
      }
      if (r.powerMw !== undefined) readings.push(r as GpuReading);
    }
    return { readings, gpus };
  }

  return {
    kind: opts.kind ?? "dcgm",
    async describe(): Promise<SourceDescription> {
      const gpus: GpuInfo[] = (await scrape()).gpus.map((r) => ({ index: r.gpu, uuid: r.uuid, name: names.get(r.gpu) ?? "unknown" }));
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
