import { errorMessage } from "./errors.ts";
/**
 * Lifecycle helpers. Every long-lived component stops through `createLifecycle`: once (a second
 * call shares the first), with an abort signal its loops and waits watch, its graceful part given a
 * grace time, and a forced part when that runs out, so a stop always ends.
 */
export interface Lifecycle {
  /** Aborted when the stop begins: loops, retries and waits end on it. */
  readonly signal: AbortSignal;
  readonly stopping: boolean;
  /**
   * Runs the stop once (later calls share it); resolves with "graceful", or "forced" when the grace
   * (`graceMs`, or the options') ran out first.
   */
  stop(graceMs?: number): Promise<"graceful" | "forced">;
}

export interface LifecycleOptions {
  graceMs: number;
  /** The orderly part: drain, flush, close downstream. */
  graceful(signal: AbortSignal): Promise<void>;
  /** What ends it anyway once the grace passed (destroy sockets, abandon writes); told the grace it had. */
  force?(graceMs: number): void | Promise<void>;
}

export function createLifecycle(opts: LifecycleOptions): Lifecycle {
  const abort = new AbortController();
  let stopping: Promise<"graceful" | "forced"> | undefined;
  return {
    signal: abort.signal,
    get stopping() {
      return stopping !== undefined;
    },
    stop(graceMs = opts.graceMs) {
      return (stopping ??= (async () => {
        abort.abort();
        let timer: NodeJS.Timeout | undefined;
        const graceful = opts.graceful(abort.signal);
        let outcome: "graceful" | "forced";
        try {
          outcome = await Promise.race([graceful.then(() => "graceful" as const), new Promise<"forced">((r) => (timer = setTimeout(() => r("forced"), graceMs)))]);
        } finally {
          // Also when the graceful part failed: its error is the stop's, the grace timer must not outlive it.
          clearTimeout(timer);
        }
        if (outcome === "forced") {
          await opts.force?.(graceMs);
          // What it waited on has been let go: give it a moment to unwind, not for ever.
          await withTimeout(graceful, 1000, "unwinding after a forced stop").catch(() => undefined);
        }
        return outcome;
      })());
    },
  };
}

/** Wraps a stop function so it runs once; later calls share its promise. */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

/** Resolves with the promise's value, or rejects after `ms` with a message naming `what`. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    // Not unref'd: whoever awaits this is waiting on purpose, and an event loop with nothing else in
    // it would otherwise end under the wait (Node exits 13, "unsettled top-level await"): a stopped
    // server's watchdog that had not exited yet ended `npm run faults` that way.
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `stop` on the first SIGINT/SIGTERM; a second signal exits at once (the operator insists).
 * Returns a function that removes the handlers.
 */
export function onShutdownSignal(stop: (signal: NodeJS.Signals) => Promise<void>, log: (line: string) => void = (l) => process.stderr.write(l + "\n")): () => void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      log(`${signal} again: exiting now`);
      process.exit(130);
    }
    stopping = true;
    log(`${signal}: stopping (send again to force)`);
    stop(signal).then(
      () => process.exit(signal === "SIGINT" ? 130 : 143),
      (err) => {
        log(`error while stopping: ${errorMessage(err)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return () => {
    process.off("SIGINT", handler);
    process.off("SIGTERM", handler);
  };
}

/**
 * For a command that finishes what it started when interrupted: the first SIGINT/SIGTERM runs
 * `interrupt` (stop sending, stop emulating), and the process exits only once the command calls
 * `done()`, i.e. after it has printed its summary and flushed its output; a second signal exits at
 * once. `done()` also removes the handlers.
 */
export function untilDone(interrupt: () => unknown, log?: (line: string) => void): { done(): void } {
  let finished!: () => void;
  const over = new Promise<void>((r) => (finished = r));
  const remove = onShutdownSignal(async () => {
    await interrupt();
    await over;
  }, log);
  return {
    done() {
      remove();
      finished();
    },
  };
}

/** Stops services in the given order (downstream last), collecting errors rather than stopping at the first. */
export async function stopAll(stops: ReadonlyArray<() => Promise<void>>): Promise<void> {
  const errors: unknown[] = [];
  for (const stop of stops) {
    try {
      await stop();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} components failed to stop`);
}

/**
 * For long-running commands: resolves after the first SIGINT/SIGTERM has run `stops` in order
 * (e.g. the service, then its NATS connection). The process exits from the signal handler.
 */
export function runUntilSignal(...stops: (() => Promise<void>)[]): Promise<void> {
  return new Promise<void>((resolve) => {
    onShutdownSignal(async () => {
      await stopAll(stops);
      resolve();
    });
  });
}
