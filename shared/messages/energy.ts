import { z } from "zod";
import { V, count, epochMs, msgId, nonNeg, requestId, token } from "./common.ts";

/** The configuration a request was served under, as far as the pipeline knows it. */
export const servingConfig = z.object({
  smClockMhz: nonNeg.optional(),
  tp: count.optional(),
  maxBatch: count.optional(),
  gpuModel: z.string().optional(),
});

/** ENERGY: derived by the analyzer, one record per finished request. */
export const requestEnergy = z.object({
  v: V,
  kind: z.literal("energy"),
  msgId,
  node: token,
  instance: token,
  requestId,
  model: z.string().optional(),
  workloadClass: z.string().optional(),
  runId: z.string().optional(),
  startMs: epochMs,
  endMs: epochMs,
  status: z.enum(["ok", "aborted", "error"]),
  promptTokens: count,
  outputTokens: count,
  energyMj: nonNeg,
  prefillEnergyMj: nonNeg,
  decodeEnergyMj: nonNeg,
  /** Idle energy amortized onto this request (0 unless amortization is on); not in energyMj. */
  idleShareMj: nonNeg,
  /**
   * Of energyMj: its share of the GPUs' static (idle) power over the windows it was active in —
   * energy of the time it held the GPUs, not of its work — and the rest, its active energy
   * (energyMj = static + active). Present when the analyzer knows the GPUs' static power
   * (--static-power-w); absent from older analyzers' records.
   */
  staticEnergyMj: nonNeg.optional(),
  activeEnergyMj: nonNeg.optional(),
  windows: count,
  /** True when a window the request was active in closed without all its inputs. */
  incomplete: z.boolean(),
  config: servingConfig,
});
export type RequestEnergy = z.infer<typeof requestEnergy>;
