import type { Clock } from "../../shared/units.ts";

/**
 * Resolves when `clock.nowMs()` reaches `atMs`, early on abort. A timer covers all but the last
 * ~SPIN_MS (timers fire up to a millisecond or more late), then setImmediate turns hand over to
 * I/O between checks until the exact moment: sub-millisecond sends without starving responses.
 */
const SPIN_MS = 1.5;
/** setTimeout's limit (2^31 − 1 ms ≈ 24.8 days): longer delays overflow to 1 ms, with a warning each time. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export function waitUntil(clock: Clock, atMs: number, signal?: AbortSignal): Promise<void> | undefined {
  if (clock.nowMs() >= atMs || signal?.aborted) return undefined; // no promise: the caller goes on synchronously
  return new Promise<void>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    signal?.addEventListener("abort", done, { once: true });
    const spin = () => {
      if (signal?.aborted) return;
      if (clock.nowMs() >= atMs) done();
      else setImmediate(spin);
    };
    const coarse = () => {
      const left = atMs - clock.nowMs();
      if (left > SPIN_MS) timer = setTimeout(coarse, Math.min(left - SPIN_MS, MAX_TIMER_MS));
      else spin();
    };
    coarse();
  });
}
