import { z } from "zod";
import { V, count, epochMs, epochMsColumn, finiteColumn, msgId, nonNeg, nonNegColumn, token, windowSpan, WINDOW_SPAN_ISSUE } from "./common.ts";

/**
 * POWER: one message per node per publish window `[windowStartMs, windowEndMs)` (default 1 s),
 * with the samples of every GPU as columns (same length arrays, sample i at tMs[i]).
 *
 * `energyStartMj` is the counter reading that closed the previous window, so each message is
 * self-contained: the window's energy is the sum of counter deltas from it through the samples,
 * whatever order messages arrive in. Absent when the counter is unsupported (NVML NOT_SUPPORTED):
 * the analyzer then integrates power.
 */
export const gpuSamples = z
  .object({
    gpu: count,
    uuid: z.string().min(1),
    tMs: epochMsColumn,
    powerMw: nonNegColumn,
    energyMj: nonNegColumn.optional(),
    energyStartMj: nonNeg.optional(),
    /** Sample time of `energyStartMj`; integration of a missing counter starts here. */
    startTMs: epochMs.optional(),
    /** Power at `startTMs` (the previous window's last sample), so integration across windows is a trapezoid too. */
    startPowerMw: nonNeg.optional(),
    smClockMhz: nonNegColumn.optional(),
    memClockMhz: nonNegColumn.optional(),
    utilPct: nonNegColumn.optional(),
    tempC: finiteColumn.optional(),
  })
  .superRefine((g, ctx) => {
    const n = g.tMs.length;
    for (const key of ["powerMw", "energyMj", "smClockMhz", "memClockMhz", "utilPct", "tempC"] as const) {
      const col = g[key];
      if (col !== undefined && col.length !== n) {
        ctx.addIssue({ code: "custom", path: [key], message: `has ${col.length} values for ${n} sample times` });
      }
    }
  });
export type GpuSamples = z.infer<typeof gpuSamples>;

/**
 * An energy counter that reads at most this much (1 J) below its last reading is jittering, not
 * restarting (a driver reload restarts it near 0): agents hold the last reading, and the analyzer
 * counts no energy and keeps its baseline, so the step is never counted twice.
 */
export const COUNTER_JITTER_MJ = 1000;

export const powerBatch = z.object({
  v: V,
  kind: z.literal("power"),
  msgId,
  node: token,
  /** Per-agent sequence, +1 per window: a gap means a window is missing. */
  seq: count,
  windowStartMs: epochMs,
  windowEndMs: epochMs,
  source: z.enum(["nvml", "dcgm", "sim", "fake"]),
  gpus: z.array(gpuSamples),
  /**
   * The instances whose WORK windows belong with this window. With it, the analyzer knows a window
   * is complete the moment the last of them arrives, whatever order messages come in.
   */
  instances: z.array(token).optional(),
  /**
   * Optional CPU package energy of the node (RAPL, all packages summed, wrap-corrected): the
   * reading that closed the previous window and the one that closes this one, so the window's CPU
   * energy is `energyEndMj − energyStartMj` over `[startTMs, endTMs]`, self-contained like the GPUs'.
   */
  cpu: z
    .object({
      energyStartMj: nonNeg,
      energyEndMj: nonNeg,
      startTMs: epochMs,
      endTMs: epochMs,
      packages: count,
    })
    .refine((c) => c.energyEndMj >= c.energyStartMj && c.endTMs >= c.startTMs, "the end reading must not precede the start")
    .optional(),
  /** Sampling jitter in this window: |actual − scheduled| sample time, ms. */
  jitterP99Ms: nonNeg.optional(),
  /** The agent's own health at the window's end (its outbox, its sampler), for pipeline dashboards. */
  agent: z
    .object({
      queued: count,
      published: count,
      dropped: count,
      spilled: count,
      sampleErrors: count,
      skippedTicks: count,
      /**
       * How long taking one sample held the agent's event loop in this window (p99, ms): the NVML
       * calls are synchronous, so a slow driver shows here (and in the tap's latency) first.
       */
      sampleP99Ms: nonNeg.optional(),
      /**
       * GPUs of the agent's inventory with no sample in this window: lost, unreadable, or not
       * answering. Their energy is missing from the window, so a dashboard should show them.
       */
      missingGpus: z.array(count).optional(),
    })
    .optional(),
}).refine(windowSpan, WINDOW_SPAN_ISSUE);
export type PowerBatch = z.infer<typeof powerBatch>;

/**
 * A POWER message: the envelope (version, kind and the message id every publisher of a node's
 * window must give it, so a re-publish is dropped as a duplicate) around what the caller measured.
 * The agent's sampler and the fleet emulator both build theirs here.
 */
export function powerMessage(body: Omit<PowerBatch, "v" | "kind" | "msgId">): PowerBatch {
  return { v: 1, kind: "power", msgId: `${body.node}:power:${body.windowStartMs}`, ...body };
}
