import { ConfigError, errorMessage } from "../../shared/errors.ts";
import type { WorkloadClass } from "../../shared/workload-classes.ts";
import type { PointRunner } from "./library-runner.ts";
import { expandMatrix, pointId, type Matrix, type PointSpec } from "./matrix.ts";
import { pointMeetsSlo, pointRow, type PointRow, type SloThresholds } from "./metrics.ts";
import { createProgress, type Progress } from "./progress.ts";
import { recommend, type Recommendation } from "./recommend.ts";
import { sloThresholds } from "./slo.ts";
import { openStore, writeResults } from "./store.ts";

/**
 * Runs a matrix point by point through a runner (library, simnode or fleet), appending each row
 * as soon as it is measured; a point already in the output directory is not run again. The
 * runner's knobs are restored when the sweep ends — normally, on a failed point's error, or on
 * abort (Ctrl-C) — and the tidy table and recommendations are written from every row measured.
 */
export interface SweepOptions {
  matrix: Matrix;
  outDir: string;
  runner: PointRunner;
  /** Only these experiments (default all). */
  only?: string[];
  signal?: AbortSignal;
  progress?: Progress;
  log?: (line: string) => void;
}

export interface SweepResult {
  rows: PointRow[];
  recommendations: Recommendation[];
  measured: number;
  skipped: number;
  failed: { id: string; error: string }[];
  interrupted: boolean;
  wallMs: number;
}

export function selectPoints(m: Matrix, only?: readonly string[]): PointSpec[] {
  const points = expandMatrix(m);
  if (!only || only.length === 0) return points;
  const names = m.experiments.map((e) => e.name);
  for (const o of only) if (!names.includes(o)) throw new ConfigError("--only", `no experiment "${o}" in matrix ${m.name} (have ${names.join(", ")})`);
  return points.filter((p) => only.includes(p.experiment));
}

/** A stored row stands for a point only if it was measured the same way and judged by the same SLO. */
function reusable(row: PointRow, p: PointSpec, mode: string, slo: SloThresholds): boolean {
  const same = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));
  return row.gpu === p.gpu && row.mode === mode && same(row.sloTtftMs, slo.ttftMs) && same(row.sloTpotMs, slo.tpotMs) && row.sloMet === pointMeetsSlo(row.requests, row.sloAttainment, slo);
}

/** Lets signal handlers (Ctrl-C) and timers run between points: library points never wait on I/O. */
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function runSweep(o: SweepOptions): Promise<SweepResult> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const points = selectPoints(o.matrix, o.only);
  const store = openStore(o.outDir);
  const done = store.done();
  const progress = o.progress ?? createProgress({ total: points.length });
  const slos = new Map<string, SloThresholds>();
  const sloOf = (p: PointSpec) => {
    const k = `${p.model}|${p.workloadClass}`;
    let s = slos.get(k);
    if (!s) slos.set(k, (s = sloThresholds(o.matrix.slo, p.model, p.gpu, p.workloadClass as WorkloadClass)));
    return s;
  };
  const failed: { id: string; error: string }[] = [];
  let measured = 0, skipped = 0, interrupted = false;
  try {
    for (const p of points) {
      await yieldToEventLoop();
      if (o.signal?.aborted) {
        interrupted = true;
        break;
      }
      const id = pointId(p);
      const prev = done.get(id);
      if (prev && !reusable(prev, p, o.runner.mode, sloOf(p))) done.delete(id); // measured otherwise: measure again
      else if (prev) {
        skipped++;
        progress.skip();
        continue;
      }
      progress.start(id);
      try {
        const m = await o.runner.measure(p, o.signal);
        if (o.signal?.aborted) {
          interrupted = true;
          break;
        }
        const row = pointRow(p, m, sloOf(p));
        store.append(row);
        done.set(id, row);
        measured++;
      } catch (err) {
        if (o.signal?.aborted) {
          interrupted = true;
          break;
        }
        failed.push({ id, error: errorMessage(err) });
        log(`point ${id} failed: ${errorMessage(err)}`);
      }
      progress.done();
    }
  } finally {
    await o.runner.restore();
    progress.finish();
  }
  const ids = new Set(points.map(pointId));
  const rows = [...done.values()].filter((r) => ids.has(r.id));
  const recommendations = recommend(rows);
  writeResults(o.outDir, rows, { matrix: o.matrix.name, description: o.matrix.description, slo: o.matrix.slo, generatedAt: new Date().toISOString(), complete: rows.length === points.length, failed, recommendations });
  return { rows, recommendations, measured, skipped, failed, interrupted, wallMs: performance.now() - t0 };
}
