import test from "ava";
import { ML_ENERGY_H100, measureSteadyState } from "../services/simnode/calibration.ts";
import { simulate } from "../services/simnode/library.ts";
import { poissonClassWorkload } from "../services/simnode/workloads.ts";

const TOLERANCE = 0.25;

for (const p of ML_ENERGY_H100) {
  test(`simnode calibration - ${p.label}: J per output token and total power within ±25% of ML.ENERGY`, (t) => {
    const s = measureSteadyState(p.model, p.gpus, p.maxBatch);
    const dJ = s.jPerOutputToken / p.jPerOutputToken - 1;
    const dP = s.totalPowerW / p.totalPowerW - 1;
    t.true(Math.abs(dJ) <= TOLERANCE, `J/token ${s.jPerOutputToken.toFixed(3)} vs ${p.jPerOutputToken} (${(dJ * 100).toFixed(0)}%)`);
    t.true(Math.abs(dP) <= TOLERANCE, `power ${s.totalPowerW.toFixed(0)} W vs ${p.totalPowerW} W (${(dP * 100).toFixed(0)}%)`);
  });
}

test("simnode calibration - energy per token falls as the batch grows (3–5× from batch 8 to 256+)", (t) => {
  const small = measureSteadyState("llama-3.1-8b", 1, 8).jPerOutputToken;
  const large = measureSteadyState("llama-3.1-8b", 1, 256).jPerOutputToken;
  t.true(small / large >= 3, `ratio ${(small / large).toFixed(1)}`);
});

test("simnode calibration - DynamoLLM's Llama2-70B spread (long/long at TP8 2.0 GHz vs short/short at TP2 1.2 GHz) is reproduced in order of magnitude", (t) => {
  // DynamoLLM: ≈0.77 vs ≈13.21 Wh/request at 2K tokens/s → 17×. Their absolute figures cannot be the
  // GPU energy of one request at that load (8 H100s at 700 W serving ~1 long request/s spend at most
  // 5.6 kJ = 1.6 Wh per request), so the model is held to the spread; docs/simnode-validation.md
  // quantifies the absolute gap.
  const whPerRequest = (cls: "short-short" | "long-long", tp: number, smClockMhz: number) => {
    const tokensPerReq = cls === "short-short" ? 376 + 71 : 1510 + 407;
    const w = poissonClassWorkload({ ratePerS: 2000 / tokensPerReq, durationS: 60, cls, seed: 9 });
    const r = simulate(w, { model: "llama-2-70b", gpus: tp, tp, smClockMhz, sampleIntervalMs: 0 });
    return r.totalEnergyJ / 3600 / r.requests.length;
  };
  const spread = whPerRequest("long-long", 8, 1980) / whPerRequest("short-short", 2, 1200);
  const published = 13.21 / 0.77;
  t.true(spread > published / 3 && spread < published * 3, `spread ${spread.toFixed(1)}× vs ${published.toFixed(1)}×`);
});
