import { readFileSync } from "node:fs";
import { z } from "zod";
import { ConfigError, describeIssues, errorMessage } from "../../shared/mod.ts";

/**
 * The governor's prior: the lab's sweep results (`joulestream sweep … --out DIR` writes
 * DIR/results.json), read as a profile of (model, TP, workload class, SM clock) → energy per output
 * token and p90 latencies. For an instance's mix of classes, the prior clock is the one with the
 * least mix-weighted energy per output token whose p90 TTFT and TPOT meet the SLO for every class
 * that makes up a noticeable share of the mix. Only the row fields used here are validated.
 */
const profileRow = z.object({
  model: z.string(),
  tp: z.number().int().positive(),
  workloadClass: z.string(),
  smClockMhz: z.number().positive(),
  jPerOutputToken: z.number().nonnegative().nullable(),
  ttftP90Ms: z.number().nonnegative().nullable(),
  tpotP90Ms: z.number().nonnegative().nullable(),
});
export type ProfileRow = z.infer<typeof profileRow>;
const profileFile = z.object({ rows: z.array(z.unknown()) });

export interface Profile {
  rows: ProfileRow[];
  /** Rows the file had that lacked a needed field (other experiments' shapes): skipped. */
  skipped: number;
}

export function loadProfile(path: string): Profile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ConfigError("--profile", `cannot read ${path}: ${errorMessage(err)}`);
  }
  const file = profileFile.safeParse(raw);
  if (!file.success) throw new ConfigError("--profile", `${path} is not a lab results.json: ${describeIssues(file.error)}`);
  const rows: ProfileRow[] = [];
  for (const r of file.data.rows) {
    const p = profileRow.safeParse(r);
    if (p.success) rows.push(p.data);
  }
  if (rows.length === 0) throw new ConfigError("--profile", `${path} has no usable rows (model, tp, workloadClass, smClockMhz, jPerOutputToken, ttftP90Ms, tpotP90Ms)`);
  return { rows, skipped: file.data.rows.length - rows.length };
}

/** Classes with less than this share of the mix do not constrain the prior's SLO check. */
const MIX_FLOOR = 0.05;

/**
 * The prior clock for an instance of `model` on `tp` GPUs seeing `mix` (class → share), or
 * undefined where the profile has nothing for it. Model names match loosely (case, vendor prefix).
 */
export function priorClock(profile: Profile, model: string | undefined, tp: number, mix: Record<string, number>, slo: { ttftSloMs: number; tpotSloMs: number }): { mhz: number; why: string } | undefined {
  const norm = (m: string) => m.toLowerCase().replace(/^.*\//, "").replace(/-chat-hf$|-hf$|-instruct$/, "").replace(/^meta-/, "");
  const rows = profile.rows.filter((r) => r.tp === tp && (model === undefined || norm(r.model) === norm(model)));
  const classes = Object.entries(mix).filter(([, s]) => s > 0);
  if (rows.length === 0 || classes.length === 0) return undefined;
  const clocks = [...new Set(rows.map((r) => r.smClockMhz))].sort((a, b) => b - a);
  let best: { mhz: number; j: number } | undefined;
  for (const f of clocks) {
    let j = 0;
    let covered = 0;
    let ok = true;
    for (const [cls, share] of classes) {
      const r = rows.find((x) => x.smClockMhz === f && x.workloadClass === cls);
      if (!r || r.jPerOutputToken === null) continue;
      covered += share;
      j += share * r.jPerOutputToken;
      if (share >= MIX_FLOOR && ((r.ttftP90Ms ?? Infinity) > slo.ttftSloMs || (r.tpotP90Ms ?? Infinity) > slo.tpotSloMs)) ok = false;
    }
    if (!ok || covered < 0.5) continue;
    const jw = j / covered;
    if (!best || jw < best.j) best = { mhz: f, j: jw };
  }
  if (!best) return undefined;
  return { mhz: best.mhz, why: `lab profile: ${best.j.toFixed(3)} J/output token for this mix at ${best.mhz} MHz, SLO met` };
}
