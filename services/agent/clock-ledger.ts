import type { NatsConnection } from "@nats-io/nats-core";
import { readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { encode, subjects } from "../../shared/mod.ts";
import { errorMessage } from "../../shared/errors.ts";
import type { ClockBackend } from "./clock-backends.ts";

/**
 * Clock control's ledger: which GPU changes are in force and who holds them, kept on disk so that a
 * killed agent's changes are undone at the next start; one lease per holder, whose expiry undoes
 * that holder's changes; every change and restore on the audit subject. Operations that touch the
 * GPUs run one at a time (`exclusive`): a reset or a stop never interleaves with a set.
 */
export interface Changed {
  clock?: [number, number];
  powerLimitMw?: { set: number; original: number };
  /** Who holds this GPU's change (its lease). */
  by: string;
}

export interface LedgerOptions {
  nc: NatsConnection;
  node: string;
  backend: ClockBackend;
  log: (line: string) => void;
  now: () => number;
  stateFile?: string;
}

export type ClockLedger = ReturnType<typeof createClockLedger>;

export function createClockLedger(opts: LedgerOptions) {
  const { log, now } = opts;
  const changed = new Map<number, Changed>();
  const persist = () => {
    if (!opts.stateFile) return;
    try {
      if (changed.size === 0) return unlinkSync(opts.stateFile);
      writeFileSync(`${opts.stateFile}.tmp`, JSON.stringify([...changed]));
      renameSync(`${opts.stateFile}.tmp`, opts.stateFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") log(`clock control: cannot keep its state in ${opts.stateFile}: ${errorMessage(err)}`);
    }
  };
  /** One lease per holder: a holder that stops renewing gets its own changes undone, nobody else's. */
  const leases = new Map<string, NodeJS.Timeout>();
  let queue: Promise<unknown> = Promise.resolve();
  const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = queue.then(fn, fn);
    queue = p.catch(() => {});
    return p;
  };

  const audit = (action: string, detail: Record<string, unknown>) => {
    log(`clock control: ${action} ${JSON.stringify(detail)}`);
    try {
      opts.nc.publish(subjects.audit(opts.node), encode({ v: 1, kind: "audit", node: opts.node, tMs: now(), action, ...detail }));
    } catch (err) {
      // A closed connection must not stop a restore half-way: the GPUs matter more than the trail.
      log(`clock control: audit ${action} not published: ${errorMessage(err)}`);
    }
  };

  const restore = async (gpus: number[], why: string) => {
    for (const gpu of gpus) {
      const c = changed.get(gpu);
      if (!c) continue;
      changed.delete(gpu);
      persist();
      const errors: string[] = [];
      if (c.clock) await opts.backend.resetSmClock(gpu).catch((err: unknown) => errors.push(`clock: ${errorMessage(err)}`));
      if (c.powerLimitMw) await opts.backend.setPowerLimitMw(gpu, c.powerLimitMw.original).catch((err: unknown) => errors.push(`power limit: ${errorMessage(err)}`));
      if (errors.length) audit("restore_failed", { gpu, why, by: c.by, error: errors.join("; ") });
      else audit("restore", { gpu, why, by: c.by, clock: c.clock, powerLimitMw: c.powerLimitMw });
    }
  };
  const heldBy = (by: string) => [...changed].filter(([, c]) => c.by === by).map(([g]) => g);
  const restoreHolder = async (by: string, why: string) => {
    clearTimeout(leases.get(by));
    leases.delete(by);
    await restore(heldBy(by), why);
  };
  const restoreAll = async (why: string) => {
    for (const t of leases.values()) clearTimeout(t);
    leases.clear();
    await restore([...changed.keys()], why);
  };
  const armLease = (by: string, ms: number) => {
    clearTimeout(leases.get(by));
    const timer = setTimeout(() => {
      leases.delete(by);
      void exclusive(() => restore(heldBy(by), `lease of ${by} expired`)).catch((err) => log(`clock control: restore failed: ${errorMessage(err)}`));
    }, ms);
    timer.unref();
    leases.set(by, timer);
  };

  /** Changes a previous run left in force (it was killed before it could undo them): undone. */
  const restoreLeftOver = async () => {
    if (!opts.stateFile) return;
    let left: [number, Changed][] = [];
    try {
      left = JSON.parse(readFileSync(opts.stateFile, "utf8")) as [number, Changed][];
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") log(`clock control: ${opts.stateFile} unreadable (${errorMessage(err)}); GPUs a killed run changed may still be locked`);
    }
    for (const [gpu, c] of Array.isArray(left) ? left : []) if (Number.isInteger(gpu) && c && typeof c === "object") changed.set(gpu, c);
    if (changed.size > 0) await restore([...changed.keys()], "left in force by a previous run that did not stop (killed?)");
  };

  return { changed, persist, exclusive, audit, restore, heldBy, restoreHolder, restoreAll, armLease, restoreLeftOver, leaseHolders: () => [...leases.keys()] };
}
