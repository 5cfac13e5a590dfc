import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * One process at a time in a directory (an outbox's spool dir): two spools reading and unlinking
 * the same segment files would publish records twice and lose the ones written meanwhile. The lock
 * is a file holding the owner's pid, made with O_EXCL; one whose process is gone (killed, crashed)
 * is taken over.
 */
export interface DirLock {
  readonly dir: string;
  /** Removes the lock file; idempotent. */
  release(): void;
}

export const LOCK_FILE = "lock";

/** Takes `dir`'s lock, or returns the pid of the live process that holds it. */
export function lockDir(dir: string): DirLock | { heldBy: number } {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: "wx" });
      let released = false;
      return {
        dir,
        release() {
          if (released) return;
          released = true;
          rmSync(path, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw err;
    }
    let pid = Number.NaN;
    try {
      pid = Number.parseInt(readFileSync(path, "utf8"), 10);
    } catch {
      // removed meanwhile: try again
    }
    if (Number.isInteger(pid) && pid > 0 && alive(pid)) return { heldBy: pid };
    rmSync(path, { force: true }); // its process is gone
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
