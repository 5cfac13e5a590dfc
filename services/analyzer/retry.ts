import { errorMessage, RetryableError } from "../../shared/mod.ts";

/** A step abandoned because its stage is stopping: its inputs stay unacknowledged for the next start. */
export class StoppedError extends RetryableError {
  constructor(message: string) {
    super("UNAVAILABLE", message);
  }
}

/**
 * Runs a step until it succeeds, backing off between failures (200 ms doubling to 10 s), or until
 * `stop()`: then the step in flight is abandoned at once (a write to a frozen InfluxDB would hang
 * for its whole timeout) and every caller gets a StoppedError. The caller classifies: a step that
 * must not be retried throws from inside `fn` an error it catches itself.
 */
export interface Retry {
  <T>(what: string, fn: () => Promise<T>): Promise<T>;
  stop(): void;
  readonly stopped: boolean;
}

export function retrying(opts: { log?: (line: string) => void; onRetry?: () => void; minDelayMs?: number; maxDelayMs?: number } = {}): Retry {
  let stopped = false;
  /**
   * What waits (a step in flight, a back-off) registers how to end it on stop, and unregisters when
   * it ends by itself. (Racing each step against one shared "stopped" promise left a reaction on it
   * per step, never freed: millions over a fleet's backlog, and the GC paid for them.)
   */
  const waiting = new Set<() => void>();
  const untilStopped = <T>(p: Promise<T>, what: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const stop = () => {
        p.catch(() => undefined); // abandoned: its outcome no longer matters
        reject(new StoppedError(`${what}: stopped while in flight`));
      };
      waiting.add(stop);
      p.then(
        (v) => (waiting.delete(stop), resolve(v)),
        (e: unknown) => (waiting.delete(stop), reject(e)),
      );
    });
  const run = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    let delay = opts.minDelayMs ?? 200;
    for (;;) {
      if (stopped) throw new StoppedError(`${what}: stopped`);
      try {
        return await untilStopped(fn(), what);
      } catch (err) {
        if (err instanceof StoppedError || stopped) throw err instanceof StoppedError ? err : new StoppedError(`${what}: stopped`);
        opts.onRetry?.();
        opts.log?.(`${what} failed, retrying in ${delay} ms: ${errorMessage(err)}`);
        let timer: NodeJS.Timeout | undefined;
        await untilStopped(new Promise<void>((r) => (timer = setTimeout(r, delay))), what).catch(() => undefined);
        clearTimeout(timer);
        delay = Math.min(delay * 2, opts.maxDelayMs ?? 10_000);
      }
    }
  };
  return Object.assign(run, {
    stop() {
      stopped = true;
      for (const stop of [...waiting]) stop();
      waiting.clear();
    },
    get stopped() {
      return stopped;
    },
  }) as Retry;
}
