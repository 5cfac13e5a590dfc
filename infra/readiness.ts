import { RetryableError } from "../shared/errors.ts";
import { isAddressInUse } from "./ports.ts";
import type { SupervisedProcess } from "./supervise.ts";

/** How often a starting server is probed. */
const PROBE_INTERVAL_MS = 50;

/**
 * Why a server did not start. `addressInUse` tells the caller that picking other ports may help
 * (a free port taken by someone else between our check and the server's bind).
 */
export class ServerStartError extends RetryableError {
  readonly server: string;
  readonly addressInUse: boolean;
  readonly logTail: string;
  constructor(server: string, reason: string, logTail: string, cause?: unknown) {
    super("UNAVAILABLE", `${server} did not start: ${reason}${logTail ? `\n--- last lines of its log ---\n${logTail}` : ""}`, cause);
    this.server = server;
    this.addressInUse = isAddressInUse(logTail);
    this.logTail = logTail;
  }
}

/**
 * Polls `probe` until it returns true, the process exits, or `timeoutMs` passes. Readiness of an
 * external server has no event to await, so polling with a deadline is the honest way; the
 * process's exit, which is an event, ends the wait at once.
 */
export async function waitUntilReady(proc: SupervisedProcess, probe: () => Promise<boolean>, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  let exited = false;
  void proc.exited.then(() => (exited = true));
  for (;;) {
    if (exited || !proc.running()) {
      const info = await proc.exited;
      throw new ServerStartError(proc.name, `exited early (${info.signal ?? `code ${info.code}`})`, proc.logTail(20));
    }
    if (signal?.aborted) throw new ServerStartError(proc.name, "start abandoned (a sibling server failed)", "", signal.reason);
    try {
      if (await probe()) return;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : "";
      throw new ServerStartError(proc.name, `not ready after ${timeoutMs} ms${why}`, proc.logTail(20), lastError);
    }
    // Wake early if the process exits meanwhile.
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    await Promise.race([
      proc.exited,
      new Promise<void>((r) => {
        timer = setTimeout(r, PROBE_INTERVAL_MS);
        onAbort = r;
        signal?.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
}

/** GET with a short timeout; resolves with the status code. */
export async function httpStatus(url: string, timeoutMs = 1_000): Promise<number> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  await res.arrayBuffer();
  return res.status;
}
