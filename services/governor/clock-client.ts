import type { NatsConnection } from "@nats-io/nats-core";
import { z } from "zod";
import { RetryableError, PermanentError, errorMessage, subjects } from "../../shared/mod.ts";

/**
 * The agents' clock control as the governor uses it: the JSON request/reply contract on
 * `ctl.v1.<node>.{set,renew,reset}` (services/agent/clock-control.ts serves it; its leases undo a
 * holder's changes when it stops renewing, its ledger audits every change). This is the governor's
 * only path to a GPU.
 */
export interface ClockClient {
  /** Locks the SM clock of `gpus` on `node` under the holder's lease. */
  set(node: string, gpus: number[], smClockMhz: number, leaseMs: number): Promise<SetOutcome>;
  /** Extends the holder's lease on `node`; false when it holds nothing there (lease ran out, reset). */
  renew(node: string, leaseMs: number): Promise<boolean>;
  /** Undoes the holder's changes on `node`. */
  reset(node: string): Promise<void>;
}

/** A refusal (422: another holder has a GPU, a clock not supported) is an answer, not a failure. */
export type SetOutcome = { ok: true } | { ok: false; refused: boolean; error: string };

const renewReply = z.object({ ok: z.boolean(), active: z.boolean() });
const REQUEST_TIMEOUT_MS = 5000;

export function createClockClient(nc: NatsConnection, holder: string): ClockClient {
  const ask = async (node: string, verb: string, body: unknown): Promise<{ error?: string; code?: number; data: unknown }> => {
    let m;
    try {
      m = await nc.request(`${subjects.control(node)}.${verb}`, JSON.stringify(body), { timeout: REQUEST_TIMEOUT_MS });
    } catch (err) {
      throw new RetryableError("UNAVAILABLE", `clock control of ${node} did not answer ${verb}: ${errorMessage(err)}`, err);
    }
    const error = m.headers?.get("Nats-Service-Error");
    const code = Number(m.headers?.get("Nats-Service-Error-Code") ?? 0);
    let data: unknown;
    try {
      data = JSON.parse(new TextDecoder().decode(m.data));
    } catch {
      data = undefined;
    }
    return { ...(error ? { error, code } : {}), data };
  };
  return {
    async set(node, gpus, smClockMhz, leaseMs) {
      const r = await ask(node, "set", { gpus, smClockMhz, leaseMs, by: holder });
      if (!r.error) return { ok: true };
      return { ok: false, refused: r.code === 422, error: r.error };
    },
    async renew(node, leaseMs) {
      const r = await ask(node, "renew", { by: holder, leaseMs });
      if (r.error) throw new PermanentError("CONFIG", `renew on ${node} refused: ${r.error}`);
      const p = renewReply.safeParse(r.data);
      if (!p.success) throw new PermanentError("CONFIG", `renew on ${node}: unexpected reply ${JSON.stringify(r.data)}`);
      return p.data.active;
    },
    async reset(node) {
      const r = await ask(node, "reset", { by: holder });
      if (r.error) throw new PermanentError("CONFIG", `reset on ${node} refused: ${r.error}`);
    },
  };
}
