import test from "ava";
import { simulate } from "../services/simnode/mod.ts";

// Library mode with the clock changed during the run (what governor-bound replays): the energy and
// the speed are those of each clock over its own span.
test("simnode library - a clock schedule runs each span at its clock", (t) => {
  const work = Array.from({ length: 40 }, (_, i) => ({ id: `r${i}`, arrivalMs: i * 250, promptTokens: 512, outputTokens: 128 }));
  const opts = { model: "llama-2-70b", gpus: 8, tp: 8, sampleIntervalMs: 1000, untilMs: 30_000 } as const;
  const hi = simulate(work, { ...opts, smClockMhz: 1980 });
  const lo = simulate(work, { ...opts, smClockMhz: 1005 });
  const mixed = simulate(work, { ...opts, smClockMhz: 1980, clockSchedule: [{ atMs: 5000, smClockMhz: 1005 }] });
  t.true(lo.totalEnergyJ < mixed.totalEnergyJ && mixed.totalEnergyJ < hi.totalEnergyJ, `${lo.totalEnergyJ} < ${mixed.totalEnergyJ} < ${hi.totalEnergyJ}`);
  t.is(mixed.knobs.smClockMhz, 1005);
  const first = (r: typeof hi) => r.requests.find((q) => q.id === "r0")!;
  t.is(first(mixed).ttftMs, first(hi).ttftMs, "before the change: the first clock's speed");
  const last = (r: typeof hi) => r.requests.find((q) => q.id === "r39")!;
  t.true(last(mixed).meanItlMs > last(hi).meanItlMs, "after it: slower");
  // An empty schedule is no schedule.
  t.is(simulate(work, { ...opts, smClockMhz: 1980, clockSchedule: [] }).totalEnergyJ, hi.totalEnergyJ);
});
