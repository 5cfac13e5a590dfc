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
  let onStop!: () => void;
  const stopSignal = new Promise<"stopped">((r) => (onStop = () => r("stopped")));
  const run = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    let delay = opts.minDelayMs ?? 200;
    for (;;) {
      if (stopped) throw new StoppedError(`${what}: stopped`);
      const attempt = fn();
      try {
        const r = await Promise.race([attempt, stopSignal]);
        if (r === "stopped") {
          attempt.catch(() => undefined); // abandoned: its outcome no longer matters
          throw new StoppedError(`${what}: stopped while in flight`);
        }
        return r as T;
      } catch (err) {
        if (err instanceof StoppedError || stopped) throw err instanceof StoppedError ? err : new StoppedError(`${what}: stopped`);
        opts.onRetry?.();
        opts.log?.(`${what} failed, retrying in ${delay} ms: ${errorMessage(err)}`);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise((r) => (timer = setTimeout(r, delay))), stopSignal]);
        clearTimeout(timer);
        delay = Math.min(delay * 2, opts.maxDelayMs ?? 10_000);
      }
    }
  };
  return Object.assign(run, {
    stop() {
      stopped = true;
      onStop();
    },
    get stopped() {
      return stopped;
    },
  }) as Retry;
}
