import test from "ava";
import { measureSteadyState } from "../services/simnode/calibration.ts";
import { GPUS, snapSmClock } from "../services/simnode/catalog.ts";
import { simulate } from "../services/simnode/library.ts";
import { poissonClassWorkload } from "../services/simnode/workloads.ts";

// The published clock trends (PAPER.md) the simulated node must reproduce, because the governor's
// decisions on simulated nodes are only as credible as this response: decode is memory-bound and
// nearly flat from ~1.6 GHz to the maximum, prefill is compute-bound, and energy per token has an
// interior optimum, neither the lowest nor the highest clock.

const H100 = GPUS["h100-sxm"]!;
const MAX = H100.maxSmClockMhz;
const at = (mhz: number) => snapSmClock(H100, mhz);
const decodeTokS = (s: { meanBatch: number; medianItlMs: number }) => (s.meanBatch / s.medianItlMs) * 1000;

for (const batch of [16, 64, 128]) {
  test(`simnode clock trends - Llama-2-70B TP4 saturated decode at batch ${batch}: 1.6 GHz keeps ≥ 95% of the max-clock throughput at ≤ 80% of the energy per token`, (t) => {
    const hi = measureSteadyState("llama-2-70b", 4, batch, { smClockMhz: MAX });
    const lo = measureSteadyState("llama-2-70b", 4, batch, { smClockMhz: at(1600) });
    const thr = decodeTokS(lo) / decodeTokS(hi);
    const energy = lo.jPerOutputToken / hi.jPerOutputToken;
    t.true(thr >= 0.95, `throughput ratio ${thr.toFixed(3)}`);
    t.true(energy <= 0.8, `energy ratio ${energy.toFixed(3)}`);
  });
}

test("simnode clock trends - saturated decode energy per token has an interior optimum between 1.1 and 1.7 GHz (not the lowest clock)", (t) => {
  const clocks = [800, 1000, 1200, 1400, 1600, 1800, MAX].map(at);
  const j = clocks.map((f) => measureSteadyState("llama-2-70b", 4, 64, { smClockMhz: f }).jPerOutputToken);
  const best = clocks[j.indexOf(Math.min(...j))]!;
  t.true(best >= 1100 && best <= 1700, `optimum at ${best} MHz: ${clocks.map((f, i) => `${f}:${j[i]!.toFixed(3)}`).join(" ")}`);
  t.true(j[0]! > Math.min(...j) * 1.05, "energy per token at 800 MHz rises again");
  // Throughput: nearly flat down to 1.6 GHz, then falling below it.
  const thr = clocks.map((f) => decodeTokS(measureSteadyState("llama-2-70b", 4, 64, { smClockMhz: f })));
  t.true(thr[1]! < 0.9 * thr[thr.length - 1]!, "decode at 1 GHz is clearly slower than at the maximum");
});

test("simnode clock trends - prefill (long prompts, light load) slows as the clock drops, roughly as 1/f", (t) => {
  const ttftP50 = (mhz: number) => {
    const w = poissonClassWorkload({ ratePerS: 0.5, durationS: 60, cls: "long-short", seed: 3 });
    const r = simulate(w, { model: "llama-2-70b", gpus: 4, tp: 4, smClockMhz: at(mhz), sampleIntervalMs: 0 });
    const xs = r.requests.map((q) => q.ttftMs).sort((a, b) => a - b);
    return xs[xs.length >> 1]!;
  };
  const clocks = [MAX, at(1600), at(1200), at(800)];
  const ttft = clocks.map(ttftP50);
  for (let i = 1; i < ttft.length; i++) t.true(ttft[i]! > ttft[i - 1]!, `TTFT must grow as the clock drops: ${ttft.map((x) => x.toFixed(0)).join(" → ")}`);
  // Compute-bound: at 1.6 GHz TTFT grows by at least 3/4 of the 1/f prediction (+24%).
  const inverse = MAX / clocks[1]! - 1;
  t.true(ttft[1]! / ttft[0]! - 1 >= 0.75 * inverse, `TTFT +${((ttft[1]! / ttft[0]! - 1) * 100).toFixed(0)}% vs 1/f +${(inverse * 100).toFixed(0)}%`);
});

test("simnode clock trends - busy power at 1.6 GHz is 15–35% below max clock (paper: up to ~20%)", (t) => {
  const p = (mhz: number) => measureSteadyState("llama-2-70b", 4, 64, { smClockMhz: at(mhz) }).totalPowerW;
  const drop = 1 - p(1600) / p(MAX);
  t.true(drop >= 0.15 && drop <= 0.35, `power drop at 1.6 GHz ${(drop * 100).toFixed(0)}% (paper: up to ~20%)`);
});
