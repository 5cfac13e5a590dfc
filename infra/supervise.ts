import { spawn } from "node:child_process";
import { closeSync, openSync, readSync, fstatSync } from "node:fs";
import type { Readable, Writable } from "node:stream";
import { createLifecycle, withTimeout } from "../shared/lifecycle.ts";

/**
 * A server process that cannot outlive the Node process that started it.
 *
 * Linux has no portable "die with my parent" for a child we do not control (prctl's
 * PR_SET_PDEATHSIG needs code in the child), and a process group does not help when the parent is
 * SIGKILLed. So each server is started through a tiny `sh` wrapper that forks a watchdog and then
 * `exec`s the server (so the server keeps the pid Node knows, and receives Node's signals):
 *
 * - the watchdog blocks reading the wrapper's stdin, a pipe whose other end only this process
 *   holds. When this process dies, however it dies, the kernel closes that end, the read sees EOF,
 *   and the watchdog sends SIGTERM to the server, then SIGKILL after WATCHDOG_GRACE_S.
 * - on a normal stop the server is stopped first, then the watchdog is told "disarm" and exits.
 * - the watchdog holds fd 3, a second pipe the server does not inherit: its close tells this
 *   process that the watchdog is gone too, so `stop()` leaves no process behind.
 *
 * The server runs in its own session (detached), so a Ctrl-C in the terminal reaches only the CLI,
 * which then stops the servers in order.
 */
const WATCHDOG_GRACE_S = 5;

const WRAPPER = `
exec 4<&0
(
  alive() {
    kill -0 $$ 2>/dev/null || return 1
    # A zombie (exited, not yet reaped by init) is gone for our purpose.
    [ -r /proc/$$/stat ] || return 0
    read -r st < /proc/$$/stat || return 1
    case "\${st##*) }" in Z*|X*) return 1 ;; esac
    return 0
  }
  while read -r line; do
    [ "$line" = disarm ] && exit 0
  done
  alive || exit 0
  kill -TERM $$ 2>/dev/null
  n=0
  while alive; do
    n=$((n + 1))
    if [ "$n" -gt ${WATCHDOG_GRACE_S * 10} ]; then kill -KILL $$ 2>/dev/null; exit 0; fi
    sleep 0.1
  done
) <&4 &
exec "$@" </dev/null 3>&- 4<&-
`;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SupervisedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logPath: string;
  /** Resolves when the server process has ended, for whatever reason. Never rejects. */
  readonly exited: Promise<ExitInfo>;
  running(): boolean;
  /** The last lines of the server's log (stdout and stderr). */
  logTail(lines?: number): string;
  /**
   * SIGTERM, then SIGKILL after `graceMs`; resolves once the server and its watchdog are gone.
   * Idempotent: later calls share the first call's promise.
   */
  stop(graceMs?: number): Promise<ExitInfo>;
  /** SIGKILL now, if it still runs (a stop whose grace is too long for the caller's own). */
  kill(): void;
}

export interface SpawnOptions {
  name: string;
  command: string;
  args: string[];
  /** stdout and stderr of the server are appended here. */
  logPath: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export const DEFAULT_STOP_GRACE_MS = 5_000;
/** How long the watchdog may take to exit once disarmed before we stop waiting for it. */
const WATCHDOG_EXIT_TIMEOUT_MS = 2_000;

export function spawnSupervised(opts: SpawnOptions): SupervisedProcess {
  const logFd = openSync(opts.logPath, "a");
  let child;
  try {
    child = spawn("/bin/sh", ["-c", WRAPPER, opts.name, opts.command, ...opts.args], {
      stdio: ["pipe", logFd, logFd, "pipe"],
      detached: true,
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    });
  } finally {
    // The child has its own copy of the descriptor.
    closeSync(logFd);
  }
  const lifeline = child.stdin as Writable;
  const watchdogPipe = child.stdio[3] as Readable;
  // The watchdog may already be gone (it was disarmed, or killed by someone); its exit is observed
  // through fd 3, so a failed write to the lifeline carries no information of its own.
  lifeline.on("error", () => undefined);
  watchdogPipe.on("error", () => undefined);
  const watchdogGone = new Promise<void>((resolve) => {
    watchdogPipe.once("end", () => resolve());
    watchdogPipe.once("close", () => resolve());
    watchdogPipe.resume();
  });

  let done = false;
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once("exit", (code, signal) => {
      done = true;
      // The server is gone: the watchdog has nothing left to guard.
      lifeline.end("disarm\n");
      resolve({ code, signal });
    });
    // spawn() of /bin/sh failing is the only way to get here without an exit event.
    child.once("error", () => {
      done = true;
      lifeline.destroy();
      resolve({ code: 127, signal: null });
    });
  });
  const kill = () => {
    if (!done) child.kill("SIGKILL");
  };
  // SIGTERM, and the server's own shutdown within the grace; then SIGKILL. The grace timer is
  // deliberately not unref'd (createLifecycle's is not): it keeps the event loop alive until the exit.
  const life = createLifecycle({
    graceMs: DEFAULT_STOP_GRACE_MS,
    graceful: async () => {
      if (!done) child.kill("SIGTERM");
      await exited;
    },
    force: async () => {
      kill();
      await exited;
    },
  });
  const stop = async (graceMs?: number): Promise<ExitInfo> => {
    await life.stop(graceMs);
    const info = await exited;
    await withTimeout(watchdogGone, WATCHDOG_EXIT_TIMEOUT_MS, "the watchdog's exit").catch(() => undefined);
    return info;
  };

  // Servers must not keep a CLI or a test worker alive on their own: if the owner forgets stop()
  // and exits, the lifeline closes and the watchdog stops the server.
  child.unref();
  (lifeline as Writable & { unref?: () => void }).unref?.();
  (watchdogPipe as Readable & { unref?: () => void }).unref?.();

  return {
    name: opts.name,
    pid: child.pid ?? -1,
    logPath: opts.logPath,
    exited,
    running: () => !done,
    logTail: (lines = 20) => readLogTail(opts.logPath, lines),
    stop,
    kill,
  };
}

/**
 * The grace for stopping `count` servers one after another: each one's own (SIGTERM, SIGKILL after
 * DEFAULT_STOP_GRACE_MS, a second to be reaped, its watchdog's exit), and two seconds for the rest
 * (removing a run directory).
 */
export function serialStopGraceMs(count: number): number {
  return count * (DEFAULT_STOP_GRACE_MS + 1_000 + WATCHDOG_EXIT_TIMEOUT_MS) + 2_000;
}

/** A group stop past its grace: SIGKILL to every server still running; returns their names, for the log. */
export function killRunning(procs: readonly SupervisedProcess[]): string[] {
  const left = procs.filter((p) => p.running());
  for (const p of left) p.kill();
  return left.map((p) => `${p.name} (pid ${p.pid})`);
}

/** The last `lines` lines of a log file (reads at most its last 16 KiB). */
export function readLogTail(path: string, lines = 20): string {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return "";
  }
  try {
    const size = fstatSync(fd).size;
    const len = Math.min(size, 16 * 1024);
    const buf = Buffer.alloc(len);
    readSync(fd, buf, 0, len, size - len);
    const all = buf.toString("utf8").split("\n");
    if (all.at(-1) === "") all.pop();
    return all.slice(-lines).join("\n");
  } finally {
    closeSync(fd);
  }
}
