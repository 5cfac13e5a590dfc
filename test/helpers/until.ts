import type { ChildProcess } from "node:child_process";

/**
 * Waiting in tests. Wait for the event where there is one: `once(emitter, "event")` from node:events,
 * a promise the code returns, or `until()` on state the test can observe. A fixed delay guesses how
 * long the event takes: too short on a loaded machine (flaky), too long everywhere else (slow).
 */

/** Polls `cond` every 100 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Waits `ms`. Only for when the pause IS the point, and say why at the call: an outage that must last
 * N seconds, a client that must be slow, a deadline the code must honour, time that must pass for
 * nothing to happen. Never to wait for something to happen: use `until()` or the event for that.
 */
export function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Resolves once `said()` (what the test collected from `p`'s output) matches `re`, checked on each
 * chunk `p` writes; rejects if `p` exits first or after `timeoutMs`. Register the collecting
 * listener before calling this, so that `said()` holds each chunk by the time it is checked.
 */
export function untilSaid(p: ChildProcess, said: () => string, re: RegExp, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      p.stdout?.off("data", check);
      p.stderr?.off("data", check);
      p.off("exit", exited);
      if (err) reject(err);
      else resolve();
    };
    const check = () => {
      if (re.test(said())) done();
    };
    const exited = () => done(new Error(`exited (${p.exitCode ?? p.signalCode}) before saying ${re}:\n${said()}`));
    const timer = setTimeout(() => done(new Error(`did not say ${re} within ${timeoutMs} ms:\n${said()}`)), timeoutMs);
    p.stdout?.on("data", check);
    p.stderr?.on("data", check);
    p.once("exit", exited);
    check();
    if (p.exitCode !== null || p.signalCode !== null) exited();
  });
}
