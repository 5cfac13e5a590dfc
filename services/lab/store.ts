import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROW_COLUMNS, type PointRow } from "./metrics.ts";

/**
 * A sweep's output directory. `points.jsonl` is the source of truth: one row appended (and
 * fsync-free but whole-line) per measured point, so an interrupted sweep resumes where it stopped;
 * a torn last line is ignored. `results.csv` / `results.json` are rewritten from it at the end.
 */
export const POINTS_FILE = "points.jsonl";
export const RESULTS_JSON = "results.json";
export const RESULTS_CSV = "results.csv";

export interface SweepStore {
  readonly dir: string;
  /** Rows already measured, by point id (the last one wins). */
  done(): Map<string, PointRow>;
  append(row: PointRow): void;
}

export function openStore(dir: string): SweepStore {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, POINTS_FILE);
  return {
    dir,
    done: () => readPoints(file),
    append(row) {
      appendFileSync(file, JSON.stringify(row) + "\n");
    },
  };
}

export function readPoints(file: string): Map<string, PointRow> {
  const out = new Map<string, PointRow>();
  if (!existsSync(file)) return out;
  for (const line of readFileSync(file, "utf8").split("\n")) {
    if (!line.trim()) continue;
    try {
      const row = JSON.parse(line) as PointRow;
      if (typeof row.id === "string") out.set(row.id, row);
    } catch {
      // A line torn by a crash mid-write: that point is simply measured again.
    }
  }
  return out;
}

const csvCell = (v: unknown): string => {
  if (v === undefined || v === null || (typeof v === "number" && !Number.isFinite(v))) return "";
  const s = typeof v === "number" ? String(Math.round(v * 1e6) / 1e6) : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

export function toCsv(rows: readonly PointRow[]): string {
  return [ROW_COLUMNS.join(","), ...rows.map((r) => ROW_COLUMNS.map((c) => csvCell(r[c])).join(","))].join("\n") + "\n";
}

/** JSON has no NaN: non-finite numbers become null. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n";
}

export function writeResults(dir: string, rows: readonly PointRow[], extra: Record<string, unknown>): void {
  writeFileSync(join(dir, RESULTS_CSV), toCsv(rows));
  writeFileSync(join(dir, RESULTS_JSON), toJson({ ...extra, rows }));
}
