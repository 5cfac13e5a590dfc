import test from "ava";
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../shared/errors.ts";
import { createLibraryRunner, type PointRunner } from "../services/lab/library-runner.ts";
import { parseMatrix } from "../services/lab/matrix.ts";
import { createProgress } from "../services/lab/progress.ts";
import { readSweepDir } from "../services/lab/report/html.ts";
import { POINTS_FILE, RESULTS_JSON } from "../services/lab/store.ts";
import { runSweep } from "../services/lab/sweep.ts";

const tmp = (t: { teardown(fn: () => void): void }) => {
  const d = mkdtempSync(join(tmpdir(), "lab-review-"));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
};
const quiet = () => createProgress({ total: 0, write: () => {} });
const base = { name: "m", window: { warmupS: 1, measureS: 4 }, axes: { workload: ["short-short"], tp: [4], maxBatch: [64], smClockMhz: [1200, 1395] } };

test("matrix - clocks off the GPU's grid or out of range, repeated values, unknown models and GPUs are refused, naming the key", (t) => {
  for (const [m, key] of [
    [{ ...base, axes: { ...base.axes, smClockMhz: [3000] } }, "matrix.experiments[0].axes.smClockMhz[0]"],
    [{ ...base, axes: { ...base.axes, smClockMhz: [1980, 1000] } }, "matrix.experiments[0].axes.smClockMhz[1]"],
    [{ ...base, axes: { ...base.axes, maxBatch: [64, 64] } }, "matrix.experiments[0].axes.maxBatch"],
    [{ ...base, axes: { ...base.axes, model: ["llama-2-7b"] } }, "matrix.experiments[0].axes.model[0]"],
    [{ ...base, gpu: "h200" }, "matrix.gpu"],
  ] as const) {
    const e = t.throws(() => parseMatrix(m), { instanceOf: ConfigError });
    t.is(e?.key, key, e?.message);
  }
});

test("sweep - --only with an unknown experiment fails before touching the output", async (t) => {
  const out = tmp(t);
  await runSweep({ matrix: parseMatrix(base), outDir: out, runner: createLibraryRunner(), progress: quiet() });
  await t.throwsAsync(runSweep({ matrix: parseMatrix(base), outDir: out, runner: createLibraryRunner(), only: ["nope"], progress: quiet() }), { instanceOf: ConfigError });
  t.is(JSON.parse(readFileSync(join(out, RESULTS_JSON), "utf8")).rows.length, 2);
});

test("sweep - a resumed sweep re-measures points judged by another SLO or measured on another GPU", async (t) => {
  const out = tmp(t);
  await runSweep({ matrix: parseMatrix(base), outDir: out, runner: createLibraryRunner(), progress: quiet() });
  const strict = await runSweep({ matrix: parseMatrix({ ...base, slo: { ttftMs: 1, tpotMs: 1 } }), outDir: out, runner: createLibraryRunner(), progress: quiet() });
  t.is(strict.measured, 2);
  t.true(strict.rows.every((r) => r.sloTtftMs === 1 && !r.sloMet));
  const a100 = await runSweep({ matrix: parseMatrix({ ...base, gpu: "a100-sxm", slo: { ttftMs: 1, tpotMs: 1 } }), outDir: out, runner: createLibraryRunner(), progress: quiet() });
  t.is(a100.measured, 2);
  t.true(a100.rows.every((r) => r.gpu === "a100-sxm"));
});

test("sweep - an abort during a library sweep is seen between points (Ctrl-C works)", async (t) => {
  const out = tmp(t);
  const ac = new AbortController();
  const inner = createLibraryRunner();
  let n = 0;
  const runner: PointRunner = { mode: inner.mode, restore: inner.restore, measure: (p, s) => { n++; return inner.measure(p, s); } };
  setImmediate(() => ac.abort()); // as a signal handler would: a macrotask
  const r = await runSweep({ matrix: parseMatrix({ ...base, axes: { ...base.axes, smClockMhz: [795, 1005, 1200, 1395, 1605, 1800, 1980] } }), outDir: out, runner, signal: ac.signal, progress: quiet() });
  t.true(r.interrupted);
  t.true(n < 7, `${n} points measured after the abort`);
});

test("report - reads points.jsonl when it is newer than results.json (a killed sweep)", async (t) => {
  const out = tmp(t);
  await runSweep({ matrix: parseMatrix({ ...base, axes: { ...base.axes, smClockMhz: [1200] } }), outDir: out, runner: createLibraryRunner(), progress: quiet() });
  const firstResults = readFileSync(join(out, RESULTS_JSON), "utf8");
  // a later sweep appended a point and was killed before rewriting results.json
  await runSweep({ matrix: parseMatrix(base), outDir: out, runner: createLibraryRunner(), progress: quiet() });
  writeFileSync(join(out, RESULTS_JSON), firstResults);
  const old = new Date(Date.now() - 60_000);
  utimesSync(join(out, RESULTS_JSON), old, old);
  t.is(readSweepDir(out).rows.length, 2);
  // the normal case: results.json written last wins
  utimesSync(join(out, POINTS_FILE), new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
  t.is(readSweepDir(out).rows.length, 1);
});
