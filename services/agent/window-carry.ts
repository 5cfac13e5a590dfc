import { readFileSync, renameSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { z } from "zod";
import { decode, encode, errorMessage, type PowerBatch } from "../../shared/mod.ts";

/**
 * The sampler's open window, carried across an agent restart through a file in the spool dir.
 *
 * Without it a restart lost the energy between the last window published and the first sample of
 * the new run (up to a window): the new run's first window started its counter baseline at its own
 * first sample. With it, the next run continues the same counter chain: it finishes the carried
 * window (a kill) or starts after the one published at stop (a graceful stop), and its first window
 * starts at the carried last reading, so that window spans the gap and the counter's delta over the
 * gap is counted once.
 *
 * The state is saved after every sample and at every window boundary (one write in flight, the
 * newest state written next), so a kill -9 loses at most the samples of the last write not yet on
 * disk; with an energy counter, that costs power samples, not energy.
 */
export interface CarriedReading {
  gpu: number;
  uuid: string;
  /** NaN when the GPU has no usable counter (power only). */
  energyMj: number;
  tMs: number;
  powerMw: number;
}

export interface CarriedColumn {
  gpu: number;
  uuid: string;
  hasEnergy: boolean;
  tMs: number[];
  powerMw: number[];
  energyMj: number[];
  smClockMhz: number[];
  memClockMhz: number[];
  utilPct: number[];
  tempC: number[];
}

export interface CarriedWindow {
  v: 1;
  node: string;
  windowMs: number;
  /** The window open when this was saved, and its seq. */
  windowStartMs: number;
  seq: number;
  /** Per GPU, the reading that closed the window before the open one: the open window's baseline. */
  last: CarriedReading[];
  /** The open window's samples so far (none after a graceful stop, which published it). */
  columns: CarriedColumn[];
  /**
   * The window closed last, kept while the outbox may still hold it only in memory: a kill may
   * lose it there, so the next run publishes it again under the same msgId (the server and the
   * analyzer drop it if it had landed). Absent after a graceful stop, which flushed it.
   */
  lastClosed?: PowerBatch;
  /** Saved by a graceful stop (everything closed was flushed) rather than along the way. */
  stopped: boolean;
}

/** How long a carried baseline stays usable by default: a restart, not an outage. */
export const MAX_CARRY_GAP_MS = 5_000;

/** A column value: NaN stands for "not read" (a GPU without clocks, a counter that went missing). */
const value = z.union([z.number(), z.nan()]);
const reading = z.object({ gpu: z.number().int().nonnegative(), uuid: z.string(), energyMj: value, tMs: z.number(), powerMw: z.number() });
const column = z.object({
  gpu: z.number().int().nonnegative(),
  uuid: z.string(),
  hasEnergy: z.boolean(),
  tMs: z.array(z.number()),
  powerMw: z.array(z.number()),
  energyMj: z.array(value),
  smClockMhz: z.array(value),
  memClockMhz: z.array(value),
  utilPct: z.array(value),
  tempC: z.array(value),
});
const carriedWindow = z.object({
  v: z.literal(1),
  node: z.string(),
  windowMs: z.number().int().positive(),
  windowStartMs: z.number(),
  seq: z.number().int().nonnegative(),
  last: z.array(reading),
  columns: z.array(column),
  lastClosed: z.custom<PowerBatch>((x) => typeof x === "object" && x !== null).optional(),
  stopped: z.boolean(),
});

/**
 * Whether a carried window may be continued at `nowMs`: the same node and window length, and the
 * newest carried reading neither in the future (a clock stepped back) nor older than `maxGapMs`.
 * Pure. GPUs are checked one by one at their first new reading (the sampler: same uuid, counter not
 * gone back).
 */
export function carryVerdict(c: CarriedWindow, at: { node: string; windowMs: number; nowMs: number; maxGapMs?: number }): { ok: true } | { ok: false; reason: string } {
  if (c.node !== at.node) return { ok: false, reason: `saved by node ${c.node}` };
  if (c.windowMs !== at.windowMs) return { ok: false, reason: `saved with ${c.windowMs} ms windows, now ${at.windowMs} ms` };
  const newest = Math.max(...c.last.map((r) => r.tMs), ...c.columns.flatMap((col) => col.tMs.slice(-1)));
  if (!Number.isFinite(newest)) return { ok: false, reason: "no reading in it" };
  const gapMs = at.nowMs - newest;
  if (gapMs < 0) return { ok: false, reason: `its last reading is ${(-gapMs).toFixed(0)} ms in the future (the clock stepped back)` };
  const maxGapMs = at.maxGapMs ?? MAX_CARRY_GAP_MS;
  if (gapMs > maxGapMs) return { ok: false, reason: `its last reading is ${(gapMs / 1000).toFixed(1)} s old (more than ${maxGapMs / 1000} s)` };
  return { ok: true };
}

export interface WindowCarryFile {
  /** The state a previous run left, or why there is none that can be read. */
  load(): { state: CarriedWindow } | { state?: undefined; reason: string };
  /** Queues `state` to be written (the newest queued is written next; never blocks). */
  save(state: CarriedWindow): void;
  /** Resolves when the newest state queued is on disk. */
  flush(): Promise<void>;
}

export function createWindowCarryFile(path: string, onError?: (err: unknown) => void): WindowCarryFile {
  let next: Uint8Array | undefined;
  let writing: Promise<void> | undefined;
  const drain = async () => {
    while (next) {
      const data = next;
      next = undefined;
      try {
        // Written aside, then renamed: a kill mid-write leaves the previous state whole.
        await writeFile(`${path}.tmp`, data);
        renameSync(`${path}.tmp`, path);
      } catch (err) {
        onError?.(err);
      }
    }
    writing = undefined;
  };
  return {
    load() {
      let raw: unknown;
      try {
        raw = decode(readFileSync(path));
      } catch (err) {
        return { reason: (err as NodeJS.ErrnoException).code === "ENOENT" ? "none saved" : `unreadable: ${errorMessage(err)}` };
      }
      const parsed = carriedWindow.safeParse(raw);
      return parsed.success ? { state: parsed.data as CarriedWindow } : { reason: `malformed: ${parsed.error.issues[0]?.message ?? "?"}` };
    },
    save(state) {
      next = encode(state);
      writing ??= drain();
    },
    async flush() {
      await writing;
    },
  };
}
