/**
 * Reading a partition's streams in step. Each consumer reads as fast as its messages are handled,
 * and they are not equally costly: on a backlog one stream runs ahead of the others in time (on a
 * 10,000-GPU backlog, REQUESTS ran minutes ahead of POWER and WORK), and everything it read waits in
 * the join for windows the others have not reached: tens of thousands of open requests, checkpoints
 * of megabytes, more garbage. The pacer holds a stream whose messages were stored more than `leadMs`
 * after those the slowest stream still reads is at; a stream that has read nothing for `idleMs` (caught up,
 * or empty) holds no one back, so nothing waits on a stream that has nothing to give.
 */
export interface Pacer<S extends string> {
  /** A message of `stream` stored (in the stream) at `storedMs` was read. */
  note(stream: S, storedMs: number): void;
  /** A promise to wait on before `stream` reads on, or undefined when it may read now. */
  wait(stream: S): Promise<void> | undefined;
  /** Times a stream was held, and the longest hold, ms. */
  stats(): { holds: number; longestHoldMs: number };
  close(): void;
}

export interface PacerOptions {
  leadMs?: number;
  idleMs?: number;
  now?: () => number;
}

export const DEFAULT_LEAD_MS = 2000;
export const DEFAULT_IDLE_MS = 250;

export function createPacer<S extends string>(streams: readonly S[], opts: PacerOptions = {}): Pacer<S> {
  const leadMs = opts.leadMs ?? DEFAULT_LEAD_MS;
  const idleMs = opts.idleMs ?? DEFAULT_IDLE_MS;
  const now = opts.now ?? Date.now;
  const stored = new Map<S, number>();
  const readAt = new Map<S, number>();
  const waiters = new Map<S, { resolve: () => void; since: number }>();
  let holds = 0;
  let longestHoldMs = 0;
  let timer: NodeJS.Timeout | undefined;

  /** How far `stream` is ahead of the slowest other stream still reading, ms (≤ 0: not ahead). */
  const ahead = (stream: S, t: number): number => {
    const mine = stored.get(stream);
    if (mine === undefined) return 0;
    let slowest = Number.POSITIVE_INFINITY;
    for (const s of streams) {
      if (s === stream || waiters.has(s)) continue;
      const at = stored.get(s);
      const last = readAt.get(s);
      if (at === undefined || last === undefined || t - last >= idleMs) continue;
      slowest = Math.min(slowest, at);
    }
    return mine - slowest;
  };
  const release = () => {
    const t = now();
    for (const [s, w] of waiters) {
      if (ahead(s, t) > leadMs) continue;
      waiters.delete(s);
      longestHoldMs = Math.max(longestHoldMs, t - w.since);
      w.resolve();
    }
    if (waiters.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  return {
    note(stream, storedMs) {
      stored.set(stream, storedMs);
      readAt.set(stream, now());
      if (waiters.size > 0) release();
    },
    wait(stream) {
      const t = now();
      if (ahead(stream, t) <= leadMs) return undefined;
      holds++;
      const p = new Promise<void>((resolve) => waiters.set(stream, { resolve, since: t }));
      // The streams it waits for may go quiet instead of catching up: look again as they idle out.
      timer ??= setInterval(release, idleMs / 2);
      return p;
    },
    stats: () => ({ holds, longestHoldMs }),
    close() {
      if (timer) clearInterval(timer);
      timer = undefined;
      for (const w of waiters.values()) w.resolve();
      waiters.clear();
    },
  };
}
