import type { ServiceMsg } from "@nats-io/services";
import { z } from "zod";
import { describeIssues, respondServiceError, type GpuInfo } from "../../shared/mod.ts";

/** Clock control's requests: their schemas, and what the GPUs support, checked before anything changes. */
export const setRequest = z.object({
  gpus: z.array(z.number().int().nonnegative()).min(1),
  /** Lock the SM clock to exactly this (must be a supported step), or give a range. */
  smClockMhz: z.number().positive().optional(),
  smClockRangeMhz: z.tuple([z.number().positive(), z.number().positive()]).optional(),
  powerLimitW: z.number().positive().optional(),
  /** The change is undone unless renewed within this time. */
  leaseMs: z.number().int().min(1000).max(3600_000).default(60_000),
  /** Who asks (for the audit trail): each holder has its own lease, and may not change another's GPUs. */
  by: z.string().max(200).default("unknown"),
});
export type SetRequest = z.input<typeof setRequest>;
export const holderRequest = z.object({ by: z.string().max(200).optional(), leaseMs: z.number().int().min(1000).max(3600_000).optional() });

export type SetRequestParsed = z.infer<typeof setRequest>;

/**
 * Why this set cannot be done, or undefined: a GPU listed twice, a GPU another holder has, a clock
 * step or power limit the GPU does not support. `holderOf`: who holds a GPU's change now.
 */
export function refusalOf(req: SetRequestParsed, gpus: readonly GpuInfo[], node: string, holderOf: (gpu: number) => string | undefined): string | undefined {
  if (new Set(req.gpus).size !== req.gpus.length) return `GPU listed twice in ${JSON.stringify(req.gpus)}`;
  if (req.smClockMhz !== undefined && req.smClockRangeMhz) return "give smClockMhz or smClockRangeMhz, not both";
  for (const g of req.gpus) {
    const info = gpus.find((x) => x.index === g);
    if (!info) return `no GPU ${g} on ${node}`;
    const holder = holderOf(g);
    if (holder !== undefined && holder !== req.by) return `GPU ${g} is held by ${holder}; it must reset (or its lease run out) first`;
    const steps = info.supportedSmClocksMhz ?? [];
    if (req.smClockMhz !== undefined && steps.length > 0 && !steps.includes(req.smClockMhz)) {
      const near = [...steps].sort((a, b) => Math.abs(a - req.smClockMhz!) - Math.abs(b - req.smClockMhz!)).slice(0, 3);
      return `GPU ${g} does not support an SM clock of ${req.smClockMhz} MHz (nearest supported: ${near.join(", ")})`;
    }
    if (req.smClockRangeMhz) {
      const [lo, hi] = req.smClockRangeMhz;
      if (lo > hi) return `SM clock range ${lo}-${hi} is backwards`;
      if (steps.length > 0 && (hi > Math.max(...steps) || lo < Math.min(...steps))) return `GPU ${g} supports SM clocks ${Math.min(...steps)}-${Math.max(...steps)} MHz`;
    }
    if (req.powerLimitW !== undefined) {
      const mw = req.powerLimitW * 1000;
      if (!Number.isInteger(mw)) return `power limit ${req.powerLimitW} W is not a whole number of milliwatts`;
      if (info.minPowerLimitMw !== undefined && mw < info.minPowerLimitMw) return `GPU ${g} power limit must be ≥ ${info.minPowerLimitMw / 1000} W`;
      if (info.maxPowerLimitMw !== undefined && mw > info.maxPowerLimitMw) return `GPU ${g} power limit must be ≤ ${info.maxPowerLimitMw / 1000} W`;
    }
  }
  return undefined;
}

/**
 * The request's JSON body as `schema` wants it, or a 400 naming what is wrong and undefined. An
 * empty body is `{}` where every field is optional (renew, reset), not JSON where one is needed (set).
 */
export function parseRequest<S extends z.ZodType>(m: ServiceMsg, schema: S, emptyIsEmptyObject: boolean): z.infer<S> | undefined {
  let raw: unknown;
  try {
    const text = new TextDecoder().decode(m.data);
    raw = emptyIsEmptyObject && text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    respondServiceError(m, 400, "request is not JSON");
    return undefined;
  }
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  respondServiceError(m, 400, describeIssues(parsed.error));
  return undefined;
}
