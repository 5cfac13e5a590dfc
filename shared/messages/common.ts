import { z } from "zod";
import { TOKEN_RE } from "../subjects.ts";

/** Every message carries `v: 1`; a consumer that meets another version dead-letters it. */
export const V = z.literal(1);
export const token = z.string().regex(TOKEN_RE, "must be one NATS subject token ([A-Za-z0-9_-])");
/** Unique per message; also sent as the Nats-Msg-Id header so the server drops re-publishes. */
export const msgId = z.string().min(1).max(200);
export const nonNeg = z.number().finite().nonnegative();
/** Epoch milliseconds, sub-millisecond resolution (float64 keeps ~0.25 µs at today's epoch). */
export const epochMs = z.number().finite().nonnegative();
export const count = z.number().int().nonnegative();
