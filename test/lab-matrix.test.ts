import test from "ava";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../shared/errors.ts";
import { expandMatrix, loadMatrix, parseMatrix, pointId } from "../services/lab/matrix.ts";

const paperPath = fileURLToPath(new URL("../load/matrices/paper.yaml", import.meta.url));

test("matrix - the shipped paper matrix expands to DynamoLLM's grid (9 classes × TP 2/4/8 × 7 clocks) plus the batch sweep", (t) => {
  const m = loadMatrix(paperPath);
  const points = expandMatrix(m);
  const grid = points.filter((p) => p.experiment === "grid");
  t.is(grid.length, 9 * 3 * 7);
  t.deepEqual([...new Set(grid.map((p) => p.tp))].sort(), [2, 4, 8]);
  t.deepEqual([...new Set(grid.map((p) => p.smClockMhz))].sort((a, b) => a - b), [795, 1005, 1200, 1395, 1605, 1800, 1980]);
  t.is(points.filter((p) => p.experiment === "batch").length, 3 * 7 * 2 * 3);
  t.is(new Set(points.map(pointId)).size, points.length, "point ids are unique");
  t.is(m.slo.factor, 5);
});

test("matrix - a file with top-level axes is one experiment named after the matrix, with defaults filled", (t) => {
  const m = parseMatrix({ name: "one", axes: { workload: ["short-long"], smClockMhz: [1980, 1200] } });
  t.is(m.experiments.length, 1);
  const points = expandMatrix(m);
  t.deepEqual(points.map((p) => [p.experiment, p.model, p.tp, p.maxBatch, p.smClockMhz]), [["one", "llama-2-70b", 4, 256, 1980], ["one", "llama-2-70b", 4, 256, 1200]]);
  t.deepEqual(points[0]!.load, { tokensPerS: 2000 });
});

test("matrix - a validation error names the offending key", (t) => {
  const e1 = t.throws(() => parseMatrix({ name: "bad", axes: { workload: ["short-huge"], smClockMhz: [1980] } }), { instanceOf: ConfigError });
  t.regex(e1.message, /matrix\.experiments\[0\]\.axes\.workload\[0\]/);
  const e2 = t.throws(() => parseMatrix({ name: "bad", experiments: [{ name: "a", axes: { workload: ["short-long"], smClockMhz: [1980], tp: [0] } }] }), { instanceOf: ConfigError });
  t.regex(e2.message, /axes\.tp\[0\]/);
  const e3 = t.throws(() => parseMatrix({ name: "bad", experiments: [{ name: "a", axes: { workload: ["short-long"], smClockMhz: [1980] } }, { name: "a", axes: { workload: ["short-long"], smClockMhz: [1980] } }] }), { instanceOf: ConfigError });
  t.regex(e3.message, /duplicate experiment/);
  t.throws(() => parseMatrix({ name: "bad", axes: { workload: ["short-long"], smClockMhz: [1980] }, typo: 1 }), { instanceOf: ConfigError });
});

test("matrix - the point id changes with every knob, so a resumed sweep never reuses another configuration's row", (t) => {
  const [p] = expandMatrix(parseMatrix({ name: "x", axes: { workload: ["short-long"], smClockMhz: [1980] } }));
  const ids = new Set([pointId(p!), pointId({ ...p!, tp: 8 }), pointId({ ...p!, maxBatch: 8 }), pointId({ ...p!, smClockMhz: 1200 }), pointId({ ...p!, workloadClass: "long-short" }), pointId({ ...p!, load: { requestsPerS: 2 } }), pointId({ ...p!, measureS: 5 }), pointId({ ...p!, seed: 2 }), pointId({ ...p!, model: "llama-3-70b" })]);
  t.is(ids.size, 9);
});
