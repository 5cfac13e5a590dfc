import test from "ava";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { checkFindings } from "../services/lab/findings.ts";
import { createLibraryRunner, type PointRunner } from "../services/lab/library-runner.ts";
import { expandMatrix, loadMatrix } from "../services/lab/matrix.ts";
import { createProgress } from "../services/lab/progress.ts";
import { configLabel } from "../services/lab/recommend.ts";
import { POINTS_FILE, RESULTS_CSV, RESULTS_JSON } from "../services/lab/store.ts";
import { runSweep } from "../services/lab/sweep.ts";

const matrixPath = (name: string) => fileURLToPath(new URL(`../load/matrices/${name}`, import.meta.url));
const tmp = (t: { teardown(fn: () => void): void }) => {
  const d = mkdtempSync(join(tmpdir(), "lab-sweep-"));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
};
const quiet = () => createProgress({ total: 0, write: () => {} });

/** A runner that counts what it is asked and can fail or abort on demand. */
function countingRunner(inner: PointRunner, opts: { failOn?: (i: number) => boolean; onMeasure?: (i: number) => void } = {}) {
  const calls: string[] = [];
  let restores = 0;
  const runner: PointRunner = {
    mode: inner.mode,
    async measure(p, signal) {
      const i = calls.push(p.experiment + p.workloadClass + p.smClockMhz) - 1;
      opts.onMeasure?.(i);
      if (opts.failOn?.(i)) throw new Error(`injected failure at point ${i}`);
      return inner.measure(p, signal);
    },
    async restore() {
      restores++;
    },
  };
  return { runner, calls, restores: () => restores };
}

test("sweep - the shipped paper matrix in library mode shows the paper's qualitative findings, and the recommendation differs by workload class", async (t) => {
  const out = tmp(t);
  const r = await runSweep({ matrix: loadMatrix(matrixPath("paper.yaml")), outDir: out, runner: createLibraryRunner(), progress: quiet() });
  t.is(r.failed.length, 0);
  t.is(r.rows.length, 315);
  const findings = Object.fromEntries(checkFindings(r.rows, r.recommendations).map((f) => [f.id, f]));
  for (const id of ["F1", "F1b", "F2", "F4", "F5", "F6"]) t.is(findings[id]!.verdict, "reproduced", `${id}: ${findings[id]!.ours}`);
  t.not(findings.F3!.verdict, "not reproduced", findings.F3!.ours);

  // Energy per token falls with the batch at saturation (finding 3), for every class.
  for (const cls of ["short-long", "medium-medium", "long-short"]) {
    const s = r.rows.filter((x) => x.experiment === "batch" && x.workloadClass === cls && x.load === "40req/s" && x.smClockMhz === 1980).sort((a, b) => a.maxBatch - b.maxBatch);
    t.true(s[0]!.jPerOutputToken > 1.5 * s[s.length - 1]!.jPerOutputToken, `${cls}: b${s[0]!.maxBatch} ${s[0]!.jPerOutputToken} vs b${s[s.length - 1]!.maxBatch} ${s[s.length - 1]!.jPerOutputToken}`);
  }
  const grid = r.recommendations.filter((x) => x.experiment === "grid");
  t.is(grid.length, 9);
  t.true(grid.every((x) => x.best !== undefined && x.savingVsBaseline! < 0), "every class has an SLO-feasible configuration cheaper than TP8 at 1980 MHz");
  t.true(new Set(grid.map((x) => configLabel(x.best!))).size > 1, "the optimum differs across classes");

  const csv = readFileSync(join(out, RESULTS_CSV), "utf8").trimEnd().split("\n");
  t.is(csv.length, 316);
  t.true(csv[0]!.startsWith("id,experiment,mode,model,gpu,workloadClass,smClockMhz"));
  const json = JSON.parse(readFileSync(join(out, RESULTS_JSON), "utf8")) as { rows: unknown[]; recommendations: unknown[]; complete: boolean };
  t.is(json.rows.length, 315);
  t.true(json.complete);
  t.true(json.recommendations.length >= 9);
});

test("sweep - resumes: points already in the output directory are not run again, and a torn last line is measured again", async (t) => {
  const out = tmp(t);
  const matrix = loadMatrix(matrixPath("smoke.yaml"));
  const total = expandMatrix(matrix).length;
  const first = countingRunner(createLibraryRunner());
  await runSweep({ matrix, outDir: out, runner: first.runner, progress: quiet() });
  t.is(first.calls.length, total);

  const lines = readFileSync(join(out, POINTS_FILE), "utf8").trimEnd().split("\n");
  writeFileSync(join(out, POINTS_FILE), lines.slice(0, 3).join("\n") + "\n" + lines[3]!.slice(0, 40));
  const second = countingRunner(createLibraryRunner());
  const r = await runSweep({ matrix, outDir: out, runner: second.runner, progress: quiet() });
  t.is(second.calls.length, total - 3);
  t.is(r.skipped, 3);
  t.is(r.rows.length, total);
});

test("sweep - restores the knobs once when a point fails, and keeps going with the next points", async (t) => {
  const out = tmp(t);
  const matrix = loadMatrix(matrixPath("smoke.yaml"));
  const c = countingRunner(createLibraryRunner(), { failOn: (i) => i === 1 });
  const r = await runSweep({ matrix, outDir: out, runner: c.runner, progress: quiet() });
  t.is(r.failed.length, 1);
  t.regex(r.failed[0]!.error, /injected failure/);
  t.is(r.rows.length, expandMatrix(matrix).length - 1);
  t.is(c.restores(), 1);
});

test("sweep - on abort (Ctrl-C) it stops after the point in flight, restores the knobs and still writes the table", async (t) => {
  const out = tmp(t);
  const matrix = loadMatrix(matrixPath("smoke.yaml"));
  const abort = new AbortController();
  const c = countingRunner(createLibraryRunner(), { onMeasure: (i) => i === 2 && abort.abort() });
  const r = await runSweep({ matrix, outDir: out, runner: c.runner, signal: abort.signal, progress: quiet() });
  t.true(r.interrupted);
  t.is(c.calls.length, 3);
  t.is(r.rows.length, 2, "the aborted point is not recorded");
  t.is(c.restores(), 1);
  const json = JSON.parse(readFileSync(join(out, RESULTS_JSON), "utf8")) as { complete: boolean };
  t.false(json.complete);
});

test("sweep - progress reports done/total and an ETA from the points measured in this run", (t) => {
  const lines: string[] = [];
  let now = 0;
  const p = createProgress({ total: 4, write: (s) => void lines.push(s), isTty: false, nowMs: () => now, everyMs: 0 });
  p.skip(2);
  p.start("a");
  now = 10_000;
  p.done();
  t.regex(lines[lines.length - 1]!, /3\/4 75% \(2 already measured\) elapsed 00:10 ETA 00:10/);
  p.finish();
  t.regex(lines[lines.length - 1]!, /3\/4/);
});
