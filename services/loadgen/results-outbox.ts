import { readdirSync, rmdirSync } from "node:fs";
import type { NatsConnection } from "@nats-io/nats-core";
import { lockDir, type DirLock } from "../../shared/dir-lock.ts";
import { ConfigError } from "../../shared/errors.ts";
import type { LoadResult } from "../../shared/messages/load.ts";
import { createOutbox, type OutboxStats } from "../../shared/outbox.ts";
import { createSpool } from "../../shared/spool.ts";
import { subjects } from "../../shared/subjects.ts";

/**
 * The load generator's results on their way to LOAD, through the outbox the agent uses (memory,
 * then disk): a NATS outage (a leader failover, a restarted server) delays results instead of
 * losing them, and they reach LOAD in the order they were produced. Each is published with
 * Nats-Msg-Id = its msgId, so a republish (a lost ack, or the next run publishing what this one
 * left in the spool dir) is dropped by the server within the stream's duplicate window.
 *
 * `publish` never waits on NATS: the runner's pace does not depend on the broker. Memory holds
 * 20 000 results, then they spill to the spool dir (up to 512 MiB, then the newest are dropped and
 * counted in `stats().dropped`).
 */
export interface ResultsOutbox {
  /** The spool dir in use (another than asked for when that one was busy), or none: memory only. */
  readonly dir: string | undefined;
  publish(r: LoadResult): void;
  /**
   * Waits, at most `timeoutMs`, for every result so far to be in LOAD; while some wait, `onWait`
   * is told how many every `everyMs`. True when none is left.
   */
  drain(timeoutMs: number, onWait?: (left: number, waitedMs: number) => void, everyMs?: number): Promise<boolean>;
  /** Results queued, those an earlier run left in the spool dir included. */
  countQueued(): Promise<number>;
  stats(): OutboxStats;
  /**
   * Stops publishing; what is not in LOAD yet stays in the spool dir for the next run (memory only:
   * it is lost). Resolves with how many results that is. Idempotent.
   */
  close(): Promise<{ held: number }>;
}

export interface ResultsOutboxOptions {
  /** Spool dir; without it results wait in memory only. */
  dir?: string;
  /**
   * When another live process holds `dir`: "fail" (a ConfigError naming --spool-dir), or
   * "own-dir": use `<dir>-<pid>` instead (removed at close when nothing is left in it).
   */
  ifBusy?: "fail" | "own-dir";
  publishTimeoutMs?: number;
}

export function openResultsOutbox(nc: NatsConnection, opts: ResultsOutboxOptions = {}): ResultsOutbox {
  const lock = opts.dir ? takeDir(opts.dir, opts.ifBusy ?? "fail") : undefined;
  const dir = lock?.dir;
  const outbox = createOutbox(nc, {
    ...(dir ? { dir } : {}),
    publishTimeoutMs: opts.publishTimeoutMs ?? 5000,
    lingerMs: 0,
    // Every record is a result of ours (this run's or an earlier one's): one the server refuses
    // waits for the permission to be fixed, kept on disk, rather than being dropped.
    ownsSubject: () => true,
  });
  let closing: Promise<{ held: number }> | undefined;
  return {
    dir,
    publish: (r) => outbox.publish(subjects.load(r.runId), r),
    async drain(timeoutMs, onWait, everyMs = 2000) {
      if (closing) return outbox.stats().queued === 0;
      const t0 = Date.now();
      for (;;) {
        const left = timeoutMs - (Date.now() - t0);
        if (await outbox.flush(Math.max(0, Math.min(everyMs, left)))) return true;
        // A closed connection never comes back: nothing more will be published through it.
        if (Date.now() - t0 >= timeoutMs || nc.isClosed()) return false;
        onWait?.(await outbox.countQueued(), Date.now() - t0);
      }
    },
    countQueued: () => outbox.countQueued(),
    stats: () => outbox.stats(),
    close: () =>
      (closing ??= (async () => {
        const inMemory = outbox.stats().queued;
        await outbox.close();
        if (!dir) return { held: inMemory };
        // Counted on disk after the close, so a result published meanwhile is not reported held.
        const spool = createSpool({ dir });
        const held = await spool.countQueued();
        await spool.close();
        lock!.release();
        if (held === 0 && dir !== opts.dir && readdirSync(dir).length === 0) rmdirSync(dir);
        return { held };
      })()),
  };
}

function takeDir(dir: string, ifBusy: "fail" | "own-dir"): DirLock {
  const lock = lockDir(dir);
  if ("dir" in lock) return lock;
  if (ifBusy === "fail") throw new ConfigError("--spool-dir", `${dir} is in use by process ${lock.heldBy} (another joulestream load): give this one its own --spool-dir`);
  const own = lockDir(`${dir}-${process.pid}`);
  if ("dir" in own) return own;
  throw new ConfigError("--spool-dir", `${dir} and ${dir}-${process.pid} are in use by other processes: give this one its own --spool-dir`);
}

/**
 * The end of a run: waits up to `timeoutMs` for the outbox to empty, saying every few seconds how
 * many results wait, closes it, and says plainly what did not reach LOAD and where it is kept.
 * Resolves with the results not in LOAD (held on disk, or dropped).
 */
export async function drainAtExit(outbox: ResultsOutbox, timeoutMs: number, log: (line: string) => void): Promise<number> {
  const reason = () => (outbox.stats().lastError ? `: ${outbox.stats().lastError}` : "");
  await outbox.drain(timeoutMs, (left, waitedMs) => log(`waiting for NATS to take ${left} results (${Math.round(waitedMs / 1000)} s of ${Math.round(timeoutMs / 1000)} s)${reason()}`));
  const lastError = reason();
  const { held } = await outbox.close();
  const s = outbox.stats();
  log(`published ${s.published} results to LOAD${s.duplicates ? ` (${s.duplicates} the server had already)` : ""}`);
  if (s.dropped > 0) log(`${s.dropped} results were DROPPED: the outbox's memory and disk were full`);
  if (held > 0) {
    log(outbox.dir
      ? `${held} results are NOT in LOAD yet${lastError}. They are held in ${outbox.dir}; the next joulestream load run with --spool-dir ${outbox.dir} publishes them`
      : `${held} results are NOT in LOAD and are lost (no spool dir)${lastError}`);
  }
  return held + s.dropped;
}
