import { z } from "zod";
import { V, count, epochMs, msgId, nonNeg, requestId, token } from "./common.ts";

/** Summary of the inter-token gaps of one streamed response. */
export const gapSummary = z.object({
  count,
  meanMs: nonNeg,
  p50Ms: nonNeg,
  p90Ms: nonNeg,
  p99Ms: nonNeg,
  maxMs: nonNeg,
});

/** LOAD: the client-side result of one request, as the load generator measured it. */
export const loadResult = z.object({
  v: V,
  kind: z.literal("load"),
  msgId,
  runId: token,
  worker: z.string(),
  requestId,
  /** Index of the request in its workload (trace row order), for exactly-once accounting. */
  index: count,
  target: z.string(),
  workloadClass: z.string().optional(),
  scheduledMs: epochMs,
  sentMs: epochMs,
  ttftMs: nonNeg.optional(),
  e2eMs: nonNeg.optional(),
  tpotMs: nonNeg.optional(),
  itl: gapSummary.optional(),
  requestedPromptTokens: count,
  requestedOutputTokens: count,
  promptTokens: count,
  outputTokens: count,
  status: z.enum(["ok", "error", "timeout", "aborted"]),
  httpStatus: z.number().int().optional(),
  error: z.string().optional(),
});
export type LoadResult = z.infer<typeof loadResult>;
