import { readFileSync } from "node:fs";

/** CPU time a process has used (utime + stime), in clock ticks, from /proc/<pid>/stat. */
export function cpuTicksOf(pid: number): number {
  // Fields after the command name (which may hold spaces, hence the split on ") ").
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(f[11]) + Number(f[12]);
}

/** The same in seconds (Linux's USER_HZ is 100). */
export const cpuSecondsOf = (pid: number): number => cpuTicksOf(pid) / 100;
