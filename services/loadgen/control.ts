import { z } from "zod";
import { subjects } from "../../shared/subjects.ts";
import { sourceSpec } from "./source-spec.ts";

/**
 * The coordinator ↔ worker protocol's messages; its subjects are `subjects.loadgen` in shared/.
 */
export const control = subjects.loadgen;

/** `instance`: a random id per worker process, so that two processes given one worker id are told apart. */
export const hello = z.object({ worker: z.string().min(1), instance: z.string().min(1).optional() });

export const job = z.object({
  runId: z.string().min(1),
  /** The worker process the job is for (its hello's `instance`); another process with the same id ignores it. */
  instance: z.string().min(1).optional(),
  shard: z.object({ index: z.number().int().nonnegative(), count: z.number().int().positive() }),
  /** Epoch ms of offset 0, the same for every worker of the run. */
  startAtMs: z.number().positive(),
  source: sourceSpec,
  targets: z.array(z.string().min(1)).min(1),
  api: z.enum(["completions", "chat"]).optional(),
  model: z.string().optional(),
  timeoutMs: z.number().positive().optional(),
  concurrency: z.number().int().positive().optional(),
  closedLoop: z.boolean().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  promptMode: z.enum(["token-ids", "text"]).optional(),
  charsPerToken: z.number().positive().optional(),
  slo: z.object({ ttftMs: z.number().positive().optional(), tpotMs: z.number().positive().optional(), e2eMs: z.number().positive().optional() }).optional(),
  heartbeatMs: z.number().positive().default(1000),
  /**
   * The coordinator beats on `coordinator(runId)` every heartbeatMs; a worker that hears nothing for
   * this long stops (its coordinator died: nobody would count what it sends). Absent: no such check.
   */
  coordinatorLostAfterMs: z.number().positive().optional(),
});
export type Job = z.infer<typeof job>;
export type JobInput = z.input<typeof job>;

export const assignReply = z.object({ ok: z.boolean(), error: z.string().optional() });

export const heartbeat = z.object({ worker: z.string(), sent: z.number().int(), completed: z.number().int(), tMs: z.number() });
export type Heartbeat = z.infer<typeof heartbeat>;

export const workerDone = z.object({
  worker: z.string(),
  /** Results produced (one per request sent). */
  results: z.number().int().nonnegative(),
  /** Results that could not be published (dropped: the outbox's memory and disk were full). */
  publishFailed: z.number().int().nonnegative(),
  /** Results still in the worker's outbox when it reported (NATS unreachable): they come later, or with its next run. */
  held: z.number().int().nonnegative().optional(),
  error: z.string().optional(),
});
export type WorkerDone = z.infer<typeof workerDone>;
