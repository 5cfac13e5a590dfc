import test from "ava";
import { chooseStaticByReplay, poolWorkloads, replayAt } from "../services/lab/governor-eval/static-replay.ts";

/**
 * The evaluation's static arm: the cheapest clock whose replay of the pool's trace keeps SLO
 * attainment within the slack of the maximum clock's. Library mode, a few trace minutes: seconds.
 */
const base = {
  trace: "load/traces/azure/AzureLLMInferenceTrace_code.csv", model: "llama-2-70b", gpus: 8, nodes: 1, speedup: 12, windowMs: 10 * 60_000, sample: 1 / 6, seed: 1, tailMs: 20_000,
  slo: { ttftSloMs: 2000, tpotSloMs: 100 }, clocksMhz: [1980, 1605, 1200, 990, 795],
};

test("static replay - the cheapest clock within the slack of the maximum's attainment, every candidate replayed", async (t) => {
  const c = chooseStaticByReplay(await poolWorkloads(base), base);
  t.deepEqual(c.rows.map((r) => r.mhz), [1980, 1605, 1200, 990, 795], "every candidate, highest first");
  const top = c.rows[0]!;
  const chosen = c.rows.find((r) => r.mhz === c.mhz)!;
  t.true(chosen.attainment >= top.attainment - 0.01, c.why);
  for (const r of c.rows) if (r.attainment >= top.attainment - 0.01) t.true(r.energyKwh >= chosen.energyKwh, `${r.mhz} MHz holds the SLO too but is not cheaper`);
  t.true(c.rows.some((r) => r.attainment < top.attainment - 0.01), "some clock on this bursty trace loses more than a point (else the test shows nothing)");
  t.true(top.energyKwh > chosen.energyKwh || c.mhz === 1980);
  // No slack: only clocks that do as well as the maximum.
  const strict = chooseStaticByReplay(await poolWorkloads(base), { ...base, slackPts: 0 });
  t.true(strict.mhz >= c.mhz);
});

test("static replay - requests are dealt to nodes as the load generator deals them (i mod n), nothing lost", async (t) => {
  const one = await poolWorkloads({ ...base, nodes: 1 });
  const three = await poolWorkloads({ ...base, nodes: 3 });
  t.is(three.flat().length, one[0]!.length);
  for (let i = 0; i < one[0]!.length; i++) t.is(three[i % 3]![Math.floor(i / 3)]!.arrivalMs, one[0]![i]!.arrivalMs);
  // Two nodes share the load: each sees fewer misses than one node taking all of it at the same clock.
  const slow = { ...base, slo: base.slo };
  t.true(replayAt(await poolWorkloads({ ...base, nodes: 2 }), 990, slow).attainment >= replayAt(one, 990, slow).attainment);
});
