import { z } from "zod";
import { V, count, epochMs, msgId, token } from "./common.ts";

/**
 * REQUESTS: the lifecycle of one LLM request as the agent's request tap saw it. Events of one
 * request share `requestId` (the `x-request-id` the client sent, or one the tap assigned).
 */
const base = {
  v: V,
  kind: z.literal("request"),
  msgId,
  node: token,
  instance: token,
  requestId: z.string().min(1).max(200),
  tMs: epochMs,
};

export const requestStart = z.object({
  ...base,
  event: z.literal("start"),
  endpoint: z.enum(["completions", "chat"]),
  stream: z.boolean(),
  model: z.string().optional(),
  /** Prompt tokens as far as the tap can tell before the server answers (token-id prompts: exact). */
  promptTokensHint: count.optional(),
  maxTokens: count.optional(),
  /** Labels the client attached (x-joulestream-run, x-joulestream-class headers). */
  runId: z.string().optional(),
  workloadClass: z.string().optional(),
});

export const requestFirstToken = z.object({ ...base, event: z.literal("first_token") });

export const requestEnd = z.object({
  ...base,
  event: z.literal("end"),
  status: z.enum(["ok", "aborted", "error"]),
  httpStatus: z.number().int().optional(),
  promptTokens: count,
  outputTokens: count,
  error: z.string().optional(),
});

export const requestEvent = z.discriminatedUnion("event", [requestStart, requestFirstToken, requestEnd]);
export type RequestEvent = z.infer<typeof requestEvent>;
export type RequestStart = z.infer<typeof requestStart>;
export type RequestEnd = z.infer<typeof requestEnd>;
