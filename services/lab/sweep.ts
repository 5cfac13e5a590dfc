import { errorMessage } from "../../shared/errors.ts";
import type { WorkloadClass } from "../simnode/mod.ts";
import type { PointRunner } from "./library-runner.ts";
import { expandMatrix, pointId, type Matrix, type PointSpec } from "./matrix.ts";
import { pointRow, type PointRow, type SloThresholds } from "./metrics.ts";
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
  return only && only.length > 0 ? points.filter((p) => only.includes(p.experiment)) : points;
}

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
      if (o.signal?.aborted) {
        interrupted = true;
        break;
      }
      const id = pointId(p);
      if (done.has(id)) {
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
