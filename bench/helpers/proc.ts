import { readFileSync } from "node:fs";

/** CPU time a process has used (utime + stime), in clock ticks, from /proc/<pid>/stat. */
export function cpuTicksOf(pid: number): number {
  // Fields after the command name (which may hold spaces, hence the split on ") ").
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(f[11]) + Number(f[12]);
}

/** The same in seconds (Linux's USER_HZ is 100). */
export const cpuSecondsOf = (pid: number): number => cpuTicksOf(pid) / 100;

/** The machine's busy and total CPU time so far, in clock ticks over all cores, from /proc/stat. */
export function machineTicks(): { busy: number; total: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  // idle and iowait
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total };
}

/** How busy all cores were between two `machineTicks()` readings, percent. */
export const machineBusyPct = (from: { busy: number; total: number }, to: { busy: number; total: number }): number => Math.round((100 * (to.busy - from.busy)) / Math.max(1, to.total - from.total));
