import { z } from "zod";
import { V, count, epochMs, nonNeg, token } from "./common.ts";

/**
 * A governor's decision for one instance and control period, published on the node's audit subject
 * (`audit.v1.<node>`, AUDIT stream) beside clock control's own set/restore events, so the trail of
 * a clock change starts with why it was wanted. Dry runs publish the same, with `dryRun: true` and
 * `applied: false`.
 */
export const governorDecision = z.object({
  v: V,
  kind: z.literal("governor"),
  /** The governor's holder name (its leases are in this name). */
  governor: z.string().min(1).max(200),
  node: token,
  instance: token,
  tMs: epochMs,
  fromMhz: nonNeg,
  toMhz: nonNeg,
  action: z.enum(["hold", "down", "up", "max"]),
  reason: z.string(),
  dryRun: z.boolean(),
  /** True when clock control made the change (or the clock was already there under this governor's lease). */
  applied: z.boolean(),
  /** Why it was not applied: dry run, another holder, clock control unreachable, kill switch. */
  notApplied: z.string().optional(),
  /** The period's measurements the decision was made on. */
  requests: count,
  attainment: nonNeg.optional(),
  ttftP90Ms: nonNeg.optional(),
  tpotP90Ms: nonNeg.optional(),
  inFlight: count.optional(),
  jPerOutputToken: nonNeg.optional(),
  priorMhz: nonNeg.optional(),
  /** A burst-guard move between periods (burst-guard.ts), and the requests then waiting for their first token. */
  guard: z.boolean().optional(),
  waiting: count.optional(),
});
export type GovernorDecision = z.infer<typeof governorDecision>;
