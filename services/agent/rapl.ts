import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { PermanentError, type Clock } from "../../shared/mod.ts";
import type { CpuEnergyMeter } from "./sampler.ts";
import { errorMessage } from "../../shared/errors.ts";

/**
 * CPU package energy from Linux powercap (RAPL): /sys/class/powercap/intel-rapl:<pkg>[:<sub>]/
 * with `name`, `energy_uj` (µJ, wraps to 0 after `max_energy_range_uj`) and the range itself.
 * AMD Zen exposes the same intel-rapl zones. Since Linux 5.10 (CVE-2020-8694) energy_uj is
 * readable by root only: that is a permanent PERMISSION error, not an empty reading.
 *
 * Wrap handling assumes at least one read per wrap period (hours at package power for the usual
 * 262-kJ range; the agent reads every 100 ms).
 */
export const DEFAULT_POWERCAP_ROOT = "/sys/class/powercap";
const UJ_PER_MJ = 1000;
const ZONE_RE = /^intel-rapl:\d+(:\d+)?$/;
/** "intel-rapl:0" is a package; "intel-rapl:0:1" one of its subzones. */
const isPackage = (id: string) => id.split(":").length === 2;
/**
 * A top-level zone that is a CPU package ("package-0"), not "psys": the platform domain of Intel
 * client parts and of some servers sits beside the packages (intel-rapl:1) and already includes them.
 */
const isCpuPackage = (z: { id: string; name: string }) => isPackage(z.id) && z.name !== "psys";

export interface RaplZone {
  /** Directory name, e.g. "intel-rapl:0" (package 0) or "intel-rapl:0:1" (a subzone). */
  id: string;
  /** The zone's own name: "package-0", "core", "uncore", "dram", "psys". */
  name: string;
  maxEnergyRangeUj: number;
}

export interface RaplReading {
  id: string;
  name: string;
  tMs: number;
  /** Energy since the reader was created, wrap-corrected, mJ. Monotonic. */
  energyMj: number;
  /** The raw counter as read, µJ. */
  rawUj: number;
}

export interface RaplReader {
  readonly zones: readonly RaplZone[];
  read(): RaplReading[];
  /** Wraps seen per zone id. */
  wraps(): Record<string, number>;
}

export interface RaplOptions {
  clock: Clock;
  /** Default /sys/class/powercap; tests point it at a temp dir of fake files. */
  root?: string;
  /** Also read subzones (core, uncore, dram), not only packages (default false). */
  subzones?: boolean;
}

/** Energy between two readings of a counter that wraps to 0 after `maxUj`, µJ. */
export function wrappedDeltaUj(prevUj: number, curUj: number, maxUj: number): number {
  return curUj >= prevUj ? curUj - prevUj : maxUj - prevUj + curUj;
}

function readNumber(path: string): number {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EACCES" || code === "EPERM") throw new PermanentError("PERMISSION", `${path}: not readable (RAPL energy needs root since Linux 5.10)`, err);
    throw new PermanentError("NOT_FOUND", `${path}: ${errorMessage(err)}`, err);
  }
  const v = Number(text.trim());
  if (!Number.isFinite(v) || v < 0) throw new PermanentError("DECODE", `${path}: not a counter: ${JSON.stringify(text.trim())}`);
  return v;
}

/** Lists the RAPL zones under `root`; throws NOT_FOUND where there is no powercap RAPL at all. */
export function createRaplReader(opts: RaplOptions): RaplReader {
  const root = opts.root ?? DEFAULT_POWERCAP_ROOT;
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch (err) {
    throw new PermanentError("NOT_FOUND", `${root}: no powercap interface: ${errorMessage(err)}`, err);
  }
  const ids = entries.filter((e) => ZONE_RE.test(e) && (opts.subzones || isPackage(e))).sort();
  if (ids.length === 0) throw new PermanentError("NOT_FOUND", `${root}: no intel-rapl zones`);
  const zones: RaplZone[] = ids.map((id) => ({
    id,
    name: readFileSync(join(root, id, "name"), "utf8").trim(),
    maxEnergyRangeUj: readNumber(join(root, id, "max_energy_range_uj")),
  }));
  const state = zones.map((z) => {
    const first = readNumber(join(root, z.id, "energy_uj"));
    return { zone: z, path: join(root, z.id, "energy_uj"), lastUj: first, totalUj: 0, wraps: 0 };
  });
  return {
    zones,
    read() {
      const out: RaplReading[] = [];
      for (const s of state) {
        const rawUj = readNumber(s.path);
        const tMs = opts.clock.nowMs();
        if (rawUj < s.lastUj) s.wraps++;
        s.totalUj += wrappedDeltaUj(s.lastUj, rawUj, s.zone.maxEnergyRangeUj);
        s.lastUj = rawUj;
        out.push({ id: s.zone.id, name: s.zone.name, tMs, energyMj: s.totalUj / UJ_PER_MJ, rawUj });
      }
      return out;
    },
    wraps() {
      return Object.fromEntries(state.map((s) => [s.zone.id, s.wraps]));
    },
  };
}

/** The packages' energy summed, as the sampler's CPU energy meter (see PowerBatch.cpu). */
export function raplMeter(reader: RaplReader): CpuEnergyMeter {
  const packages = reader.zones.filter(isCpuPackage).length;
  return {
    packages,
    read() {
      let energyMj = 0;
      let tMs = 0;
      for (const r of reader.read()) {
        if (!isCpuPackage(r)) continue; // subzones are part of their package; psys includes the packages
        energyMj += r.energyMj;
        tMs = Math.max(tMs, r.tMs);
      }
      return { energyMj, tMs };
    },
  };
}
