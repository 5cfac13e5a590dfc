import test from "ava";
import fc from "fast-check";
import { paretoFrontier, recommend } from "../services/lab/recommend.ts";
import { pointRow, quantile, type PointRow } from "../services/lab/metrics.ts";
import type { PointSpec } from "../services/lab/matrix.ts";

const spec: PointSpec = { experiment: "e", model: "llama-2-70b", gpu: "h100-sxm", workloadClass: "short-long", smClockMhz: 1980, maxBatch: 256, tp: 4, gpus: 4, load: { tokensPerS: 2000 }, warmupS: 1, measureS: 10, seed: 1 };

const row = (over: Partial<PointRow>): PointRow => ({ ...pointRow(spec, { mode: "test", windowMs: 10_000, energyJ: 1000, promptTokens: 100, outputTokens: 100, completed: 10, requests: [{ ok: true, ttftMs: 10, tpotMs: 5, e2eMs: 100 }], offeredRequestsPerS: 1, smClockActualMhz: 1980, meanBatch: 1, wallMs: 1 }, { ttftMs: 100, tpotMs: 50, attainment: 0.9 }), ...over });

test("recommend - the Pareto frontier holds exactly the points no other point beats in both energy and latency", (t) => {
  fc.assert(
    fc.property(fc.array(fc.record({ jPerOutputToken: fc.integer({ min: 1, max: 20 }), e2eP90Ms: fc.integer({ min: 1, max: 20 }) }), { minLength: 1, maxLength: 30 }), (pts) => {
      const front = paretoFrontier(pts);
      const dominated = (p: (typeof pts)[number]) => pts.some((q) => q.jPerOutputToken <= p.jPerOutputToken && q.e2eP90Ms <= p.e2eP90Ms && (q.jPerOutputToken < p.jPerOutputToken || q.e2eP90Ms < p.e2eP90Ms));
      for (const p of front) if (dominated(p)) return false;
      for (const p of pts) if (!dominated(p) && !front.some((f) => f.jPerOutputToken === p.jPerOutputToken && f.e2eP90Ms === p.e2eP90Ms)) return false;
      return front.every((p, i) => i === 0 || (p.jPerOutputToken >= front[i - 1]!.jPerOutputToken && p.e2eP90Ms < front[i - 1]!.e2eP90Ms));
    }),
  );
  t.pass();
});

test("recommend - picks the least energy per output token among points meeting the SLO, per workload class", (t) => {
  const rows = [
    row({ id: "a", workloadClass: "short-long", jPerOutputToken: 1, sloMet: false, smClockMhz: 795 }),
    row({ id: "b", workloadClass: "short-long", jPerOutputToken: 2, sloMet: true, smClockMhz: 1200 }),
    row({ id: "c", workloadClass: "short-long", jPerOutputToken: 3, sloMet: true, smClockMhz: 1980, tp: 8 }),
    row({ id: "d", workloadClass: "long-short", jPerOutputToken: 5, sloMet: false }),
  ];
  const recs = recommend(rows);
  const sl = recs.find((r) => r.workloadClass === "short-long")!;
  t.is(sl.best?.id, "b");
  t.is(sl.baseline.id, "c", "baseline: most GPUs, highest clock");
  t.is(sl.savingVsBaseline, 2 / 3 - 1);
  t.is(sl.feasible, 2);
  const ls = recs.find((r) => r.workloadClass === "long-short")!;
  t.is(ls.best, undefined, "no point meets the SLO: no recommendation");
});

test("metrics - per-request and per-token energy multiply back to the window's energy; attainment counts both SLOs", (t) => {
  fc.assert(
    fc.property(fc.double({ min: 1, max: 1e6, noNaN: true }), fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 1e5 }), fc.array(fc.record({ ttft: fc.integer({ min: 1, max: 400 }), tpot: fc.integer({ min: 1, max: 100 }) }), { minLength: 1, maxLength: 50 }), (energyJ, completed, outputTokens, lat) => {
      const r = pointRow(spec, { mode: "test", windowMs: 10_000, energyJ, promptTokens: 0, outputTokens, completed, requests: lat.map((l) => ({ ok: true, ttftMs: l.ttft, tpotMs: l.tpot, e2eMs: l.ttft + l.tpot })), offeredRequestsPerS: 1, smClockActualMhz: 1980, meanBatch: 1, wallMs: 1 }, { ttftMs: 200, tpotMs: 50, attainment: 0.9 });
      const good = lat.filter((l) => l.ttft <= 200 && l.tpot <= 50).length / lat.length;
      return Math.abs(r.energyPerRequestJ * completed - energyJ) < 1e-6 * energyJ && Math.abs(r.jPerOutputToken * outputTokens - energyJ) < 1e-6 * energyJ && r.sloAttainment === good && r.sloMet === good >= 0.9 && Math.abs(r.avgPowerW - energyJ / 10) < 1e-9 * energyJ;
    }),
  );
  t.is(quantile([5, 1, 3, 2, 4], 0.5), 3);
  t.is(quantile([5, 1, 3, 2, 4], 0.9), 5);
});
