import { ConfigError, errorMessage, type Clock } from "../../shared/mod.ts";
import { nvmlClockBackend, simnodeClockBackend, type ClockBackend } from "./clock-backends.ts";
import { createDcgmSource } from "./dcgm-source.ts";
import type { PowerSource } from "./power-source.ts";

export type SourceKind = "auto" | "nvml" | "dcgm" | "sim";

export interface OpenSourceOptions {
  /** auto: NVML if the library loads, else a DCGM exporter if one answers, else an error naming both. */
  source: SourceKind;
  dcgmUrl: string;
  nvmlLibrary?: string;
  nvmlCalls: "auto" | "sync" | "async";
  /** Clocks, utilization and temperature read this often (default 1000 ms; 0: every sample). */
  nvmlExtrasIntervalMs?: number;
  allowClockControl: boolean;
  /** The simnode's base URL for clock control (--source sim); default: the origin of dcgmUrl. */
  simAdmin?: string;
  clock: Clock;
  say: (line: string) => void;
}

export interface OpenedSource {
  source: PowerSource;
  clockBackend?: ClockBackend;
}

/** The agent's power source, as `--source` asks; with clock control where the source can give it. */
export async function openPowerSource(o: OpenSourceOptions): Promise<OpenedSource> {
  if (o.source === "nvml") return withNvmlControl(await openNvml(o), o);
  if (o.source === "dcgm" || o.source === "sim") return withDcgmControl(createDcgmSource({ url: o.dcgmUrl, clock: o.clock, kind: o.source }), o);
  let nvmlWhy: string;
  try {
    const nvml = await openNvml(o);
    o.say("--source auto: NVML loaded");
    return withNvmlControl(nvml, o);
  } catch (err) {
    nvmlWhy = errorMessage(err);
  }
  const dcgm = createDcgmSource({ url: o.dcgmUrl, clock: o.clock, kind: "dcgm" });
  try {
    // One scrape: an exporter that answers is one the sampler can read.
    await dcgm.describe();
  } catch (err) {
    await dcgm.close();
    throw new ConfigError(
      "--source",
      `auto found no GPU power source: NVML did not load (${nvmlWhy}), and no DCGM exporter answered at ${o.dcgmUrl} (${errorMessage(err)}). ` +
        "Give --nvml-library PATH where libnvidia-ml.so.1 is not on the loader's path, --dcgm-url URL where dcgm-exporter listens elsewhere, or --source sim for a simulated node",
    );
  }
  o.say(`--source auto: no NVML (${nvmlWhy}); reading the DCGM exporter at ${o.dcgmUrl}`);
  return withDcgmControl(dcgm, o);
}

type NvmlSource = Awaited<ReturnType<typeof openNvml>>;

async function openNvml(o: OpenSourceOptions) {
  // Loaded here, not at the top: koffi and the driver are touched only when NVML is asked for.
  const { createNvmlSource } = await import("./nvml/mod.ts");
  const { say } = o;
  return createNvmlSource({
    clock: o.clock,
    ...(o.nvmlLibrary ? { libraryPath: o.nvmlLibrary } : {}),
    calls: o.nvmlCalls,
    ...(o.nvmlExtrasIntervalMs !== undefined ? { extrasIntervalMs: o.nvmlExtrasIntervalMs } : {}),
    onCallsChange: (_calls, ms) => say(`NVML samples held the event loop ${ms.toFixed(1)} ms; sampling moves to async calls`),
    onGpuError: gpuErrorLog(say),
    onCounterReset: (gpu, before, after) => say(`GPU ${gpu}: the energy counter went back from ${before} to ${after} mJ (driver reloaded?); energy counts on from the new value`),
    onCounterStuck: (gpu, mj, mw) => say(`GPU ${gpu}: the energy counter stays at ${mj} mJ while power reads ${(mw / 1000).toFixed(0)} W; it is ignored from now on and energy is integrated from power`),
  });
}

function withNvmlControl(nvml: NvmlSource, o: OpenSourceOptions): OpenedSource {
  return o.allowClockControl ? { source: nvml, clockBackend: nvmlClockBackend(nvml.control) } : { source: nvml };
}

function withDcgmControl(source: PowerSource, o: OpenSourceOptions): OpenedSource {
  if (!o.allowClockControl) return { source };
  if (source.kind !== "sim") throw new ConfigError("--allow-clock-control", `needs NVML (or --source sim)${o.source === "auto" ? ", which auto did not find" : ""}: a DCGM exporter only reads`);
  return { source, clockBackend: simnodeClockBackend(o.simAdmin ?? new URL(o.dcgmUrl).origin) };
}

/**
 * GPU read errors, for the log: a GPU left out for good once, a failing read the 1st, 10th,
 * 100th… time per GPU and error, so a GPU that fails at 10 Hz is seen without flooding the journal.
 */
function gpuErrorLog(say: (line: string) => void): (gpu: number, err: Error & { nvmlName?: string }, leftOut: boolean) => void {
  const counts = new Map<string, number>();
  return (gpu, err, leftOut) => {
    if (leftOut) return say(`GPU ${gpu} is left out of samples from now on: ${err.message}`);
    const key = `${gpu}:${err.nvmlName ?? err.message}`;
    const n = (counts.get(key) ?? 0) + 1;
    counts.set(key, n);
    if (/^10*$/.test(String(n))) say(`GPU ${gpu} left out of a sample${n > 1 ? ` (${n}th time)` : ""}: ${err.message}`);
  };
}
