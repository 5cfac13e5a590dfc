import { z } from "zod";
import { V, count, epochMs, msgId, requestId, token, windowSpan, WINDOW_SPAN_ISSUE } from "./common.ts";

/**
 * WORK: per instance and per window aligned with POWER, which requests were active and how many
 * prefill and decode tokens each processed in it. Published for every window, empty ones too, so
 * "idle" is a fact and not a missing message.
 */
export const workItem = z.object({
  requestId,
  prefillTokens: count,
  decodeTokens: count,
  /**
   * The request has not had its first token yet: its prefillTokens are the tap's estimate of the
   * prompt's prefill in this window (services/agent/prefill-spread.ts), and the first token's window
   * gets the rest. Absent from agents that do not estimate (all prefill in the first token's window).
   */
  awaitingFirstToken: z.literal(true).optional(),
  /**
   * Σ over this window's decode tokens of the context each was generated at (prompt + tokens before
   * it): what the step read of the KV cache for the request. The context-aware decode split weighs
   * by it (shared/energy/attribution.ts). Absent from agents that do not count it.
   */
  decodeCtxTokens: count.optional(),
  /**
   * Σ over this window's prefill tokens of their position in the prompt (the tokens before each, which
   * its attention reads): prefill's cost per token grows with it. Absent from agents that do not count it.
   */
  prefillCtxTokens: count.optional(),
});
export type WorkItem = z.infer<typeof workItem>;

export const workWindow = z.object({
  v: V,
  kind: z.literal("work"),
  msgId,
  node: token,
  instance: token,
  /** Indexes of the GPUs this instance runs on (TP=4 → 4 GPUs). */
  gpus: z.array(count).min(1),
  model: z.string().optional(),
  windowStartMs: epochMs,
  windowEndMs: epochMs,
  requests: z.array(workItem),
  /** Requests in flight at the window's end (running or queued), for batch occupancy. */
  inFlight: count.optional(),
}).refine(windowSpan, WINDOW_SPAN_ISSUE);
export type WorkWindow = z.infer<typeof workWindow>;

/** A WORK message around what the caller counted (see powerMessage): the agent's work tracker and the fleet emulator build theirs here. */
export function workMessage(body: Omit<WorkWindow, "v" | "kind" | "msgId">): WorkWindow {
  return { v: 1, kind: "work", msgId: `${body.node}:work:${body.instance}:${body.windowStartMs}`, ...body };
}
