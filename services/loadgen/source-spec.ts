import { z } from "zod";
import { syntheticWorkload } from "./synthetic.ts";
import { traceWorkload, TRACE_FORMATS } from "./traces.ts";
import type { Workload } from "./workload.ts";
import type { ParseOptions } from "./trace-error.ts";

/**
 * A workload as data, so a coordinator can send it to workers that build the same request stream
 * (every worker reads the same trace path, or draws the same seeded synthetic arrivals) and keep
 * their share of the indices.
 */
export const sourceSpec = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("trace"),
    path: z.string().min(1),
    format: z.enum(TRACE_FORMATS as unknown as ["azure", "mooncake", "burstgpt"]).optional(),
    lenient: z.boolean().optional(),
    speedup: z.number().positive().optional(),
    fromMs: z.number().nonnegative().optional(),
    windowMs: z.number().positive().optional(),
    limit: z.number().int().nonnegative().optional(),
    sample: z.number().gt(0).max(1).optional(),
    seed: z.number().int().optional(),
    maxPromptTokens: z.number().int().positive().optional(),
    maxOutputTokens: z.number().int().positive().optional(),
  }),
  z.object({
    kind: z.literal("synthetic"),
    cls: z.string().min(1),
    rate: z.union([z.number().positive(), z.object({ from: z.number().nonnegative(), to: z.number().nonnegative() })]),
    durationS: z.number().positive(),
    arrival: z.enum(["poisson", "gamma", "constant"]).optional(),
    cv: z.number().positive().optional(),
    lengths: z.enum(["uniform", "fixed"]).optional(),
    seed: z.number().int().optional(),
  }),
]);
export type SourceSpec = z.infer<typeof sourceSpec>;

export function workloadOf(spec: SourceSpec, report: Pick<ParseOptions, "onSkip"> = {}): Workload {
  if (spec.kind === "synthetic") {
    const { kind: _k, ...o } = spec;
    return syntheticWorkload(o);
  }
  const { kind: _k, path, ...o } = spec;
  return traceWorkload(path, { ...o, ...report });
}

/** How many requests a spec yields (one streaming pass), for exactly-once accounting. */
export async function countRequests(spec: SourceSpec): Promise<number> {
  let n = 0;
  for await (const _ of workloadOf(spec)) n++;
  return n;
}
