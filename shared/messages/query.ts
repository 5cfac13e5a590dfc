import { z } from "zod";
import { MAX_EPOCH_MS } from "./common.ts";

/**
 * The analyzer's query API contract (`joulestream.query.v1.summary`, JSON request/reply): what a
 * client asks, and the summary it gets. The analyzer answers it; the CLI and the demo read it.
 */
export const summaryRequest = z.object({
  runId: z.string().regex(/^[A-Za-z0-9_-]+$/).optional(),
  // InfluxDB's times end in 2262 (int64 ns); a larger number would print as 1e+21 and fail to parse.
  fromMs: z.number().nonnegative().max(MAX_EPOCH_MS).optional(),
  toMs: z.number().nonnegative().max(MAX_EPOCH_MS).optional(),
  node: z.string().regex(/^[A-Za-z0-9_-]+$/).optional(),
});
export type SummaryRequest = z.infer<typeof summaryRequest>;

export interface GroupSummary {
  model: string;
  workloadClass: string;
  /** Served requests (status ok): the energy, tokens, per-request figures and latencies below are theirs. */
  requests: number;
  energyJ: number;
  outputTokens: number;
  promptTokens: number;
  jPerRequest: { mean: number; p50: number; p99: number };
  jPerOutputToken: number;
  jPerToken: number;
  ttftMs: { p50: number | null; p99: number | null };
  tpotMs: { p50: number | null; p99: number | null };
  e2eMs: { p50: number | null; p99: number | null };
  /** Requests the server answered with an error instead of a completion (status error: a 4xx such as a prompt over the context, a 5xx). */
  refused: { requests: number; energyJ: number };
  /** Requests the client gave up on before the end (status aborted), with what they had generated. */
  aborted: { requests: number; energyJ: number; outputTokens: number };
  /** Of every request with a load result (refused and aborted ones included: they missed), the share that met the SLO. */
  sloAttainment: number | null;
}

export interface Summary {
  request: SummaryRequest;
  groups: GroupSummary[];
  measuredJ: number;
  attributedJ: number;
  idleJ: number;
  idleShare: number;
}

