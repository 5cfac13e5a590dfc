import test from "ava";
import { createSampler } from "../services/agent/sampler.ts";
import type { PowerSource } from "../services/agent/power-source.ts";
import type { PowerBatch } from "../shared/mod.ts";

/** A source at a constant 300 W per GPU whose counter integrates exactly; time from a settable clock. */
function fixture(startMs: number) {
  let now = startMs;
  const clock = { nowMs: () => now };
  const source: PowerSource = {
    kind: "fake",
    describe: async () => ({ gpus: [] }),
    sample: async () => [0, 1].map((gpu) => ({ gpu, uuid: `GPU-${gpu}`, tMs: now, powerMw: 300_000, energyMj: 300 * now })),
    close: async () => {},
  };
  return { clock, source, set: (t: number) => (now = t) };
}

test("sampler - stop closes every window up to now, even when the boundary tick has not run yet", async (t) => {
  const f = fixture(10_250);
  const windows: PowerBatch[] = [];
  const boundaries: number[] = [];
  const s = createSampler({ source: f.source, clock: f.clock, node: "n1", onWindow: (b) => windows.push(b), onBoundary: (a) => boundaries.push(a) });
  s.start();
  await new Promise((r) => setImmediate(r));
  f.set(12_050); // two boundaries passed without a tick (a stalled event loop)
  await s.stop();
  t.deepEqual(windows.map((w) => w.windowStartMs), [10_000, 11_000, 12_000]);
  t.deepEqual(boundaries, [10_000, 11_000, 12_000]);
  t.deepEqual(windows.map((w) => w.seq), [0, 1, 2]);
  // Energy is continuous across the empty window: the last window spans from the first sample.
  const last = windows[2]!.gpus[0]!;
  t.is(last.energyStartMj, 300 * 10_250);
  t.is(last.energyMj!.at(-1), 300 * 12_050);
});
