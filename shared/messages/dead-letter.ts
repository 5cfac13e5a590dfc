import { z } from "zod";
import { V, epochMs } from "./common.ts";

/** What goes to `dlq.v1.<stream>`: the original bytes, where they came from, and why they were refused. */
export const deadLetter = z.object({
  v: V,
  kind: z.literal("dead_letter"),
  stream: z.string(),
  subject: z.string(),
  seq: z.number().int().nonnegative().optional(),
  reason: z.string(),
  detail: z.string(),
  tMs: epochMs,
  data: z.custom<Uint8Array>((v) => v instanceof Uint8Array, "must be bytes"),
});
export type DeadLetter = z.infer<typeof deadLetter>;
