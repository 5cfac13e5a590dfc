import { z } from "zod";
import { V, count, epochMs, msgId, requestId, token } from "./common.ts";

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
  requestId,
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

/** Most events in one REQUESTS batch (a publisher also keeps a batch under the server's max payload). */
export const MAX_BATCH_EVENTS = 4096;

/**
 * REQUESTS as the agent publishes them: the events of one short span (the publisher's linger) in
 * one message, in the order the tap emitted them, so a request costs a fraction of one JetStream
 * publish instead of three. `msgId` is the batch's own (the server's duplicate check on re-publish);
 * each event keeps its own `msgId` (the analyzer's duplicate check). Events are validated one by one
 * (`requestEvent`) by the consumer, so one bad event is dead-lettered alone, not with its batch.
 * A REQUESTS message is either a batch or a single event (`requestsMessage`).
 */
export const requestBatch = z.object({
  v: V,
  kind: z.literal("request_batch"),
  msgId,
  node: token,
  events: z.array(z.unknown()).min(1).max(MAX_BATCH_EVENTS),
});
export type RequestBatch = z.infer<typeof requestBatch>;
export const requestsMessage = z.discriminatedUnion("kind", [requestEvent, requestBatch]);
export type RequestStart = z.infer<typeof requestStart>;
export type RequestEnd = z.infer<typeof requestEnd>;

/** The events a REQUESTS message carries, unvalidated (a batch's events, or the one event). */
export function eventsOf(m: z.infer<typeof requestsMessage>): unknown[] {
  return m.kind === "request_batch" ? m.events : [m];
}
