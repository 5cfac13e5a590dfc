import test from "ava";
import { createSampler } from "../services/agent/sampler.ts";
import type { PowerSource } from "../services/agent/power-source.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { powerBatch, systemClock, type PowerBatch } from "../shared/mod.ts";
import { createRaplReader, raplMeter } from "../services/agent/rapl.ts";
import { until } from "./helpers/until.ts";

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
  t.is(last.startPowerMw, 300_000, "and the power there, for a trapezoid when there is no counter");
  t.is(windows[0]!.gpus[0]!.startPowerMw, undefined, "the first window has no reading before it");
});

test("sampler - a GPU of the inventory with no sample in a window is reported missing in that window", async (t) => {
  const f = fixture(10_250); // samples GPUs 0 and 1
  const windows: PowerBatch[] = [];
  const health = () => ({ queued: 0, published: 0, dropped: 0, spilled: 0 });
  const s = createSampler({ source: f.source, clock: f.clock, node: "n1", gpus: [0, 1, 2], onWindow: (b) => windows.push(b), health });
  s.start();
  await new Promise((r) => setImmediate(r));
  f.set(11_050);
  await s.stop();
  t.deepEqual(windows.map((w) => w.agent?.missingGpus), [[2], [2]]);
  t.true(windows.every((w) => powerBatch.safeParse(w).success));
  const all = createSampler({ source: f.source, clock: f.clock, node: "n1", gpus: [0, 1], onWindow: (b) => windows.push(b), health });
  all.start();
  await all.stop();
  t.deepEqual(windows.at(-1)!.agent!.missingGpus, []);
});

test("sampler - on the wall clock: one sample per grid slot, never two (timers fire up to a millisecond early)", async (t) => {
  const clock = systemClock();
  const source: PowerSource = {
    kind: "fake",
    describe: async () => ({ gpus: [] }),
    sample: async () => [{ gpu: 0, uuid: "GPU-0", tMs: clock.nowMs(), powerMw: 300_000 }],
    close: async () => {},
  };
  const windows: PowerBatch[] = [];
  const s = createSampler({ source, clock, node: "n1", sampleIntervalMs: 20, publishIntervalMs: 200, onWindow: (b) => windows.push(b) });
  s.start();
  // Enough ticks to tell (about 1.2 s at 50 Hz), however late the timers fire on a loaded machine.
  const sampled = () => windows.reduce((n, w) => n + (w.gpus[0]?.tMs.length ?? 0), 0);
  await until(() => sampled() >= 62, 20_000, `62 samples (${sampled()} so far)`);
  await s.stop();
  // Timer ticks only: start() and stop() take a sample of their own, off the grid.
  const times = windows.flatMap((w) => w.gpus[0]?.tMs ?? []).slice(1, -1);
  const slots = times.map((x) => Math.floor(x / 20)); // ticks come late, never early: a sample belongs to the slot it follows
  t.is(new Set(slots).size, slots.length, `two samples in one 20 ms slot: ${times.map((x) => (x % 1000).toFixed(1)).join(" ")}`);
  for (const w of windows.slice(1, -1)) t.true(w.gpus[0]!.tMs.length <= 10, `${w.gpus[0]!.tMs.length} samples in a 200 ms window at 50 Hz`);
  t.true(times.length >= 60, `${times.length} timer samples`);
});

test("sampler - CPU energy (RAPL packages, read from powercap files) is carried per window and adds up across windows", async (t) => {
  const root = mkdtempSync(join(tmpdir(), "powercap-"));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const zones = { "intel-rapl:0": 1_000_000, "intel-rapl:1": 5_000_000, "intel-rapl:0:0": 0 }; // two packages, one subzone
  for (const [id, uj] of Object.entries(zones)) {
    mkdirSync(join(root, id));
    writeFileSync(join(root, id, "name"), id.split(":").length === 2 ? `package-${id.at(-1)}` : "core");
    writeFileSync(join(root, id, "max_energy_range_uj"), "262143328850");
    writeFileSync(join(root, id, "energy_uj"), String(uj));
  }
  const setUj = (id: string, uj: number) => writeFileSync(join(root, id, "energy_uj"), String(uj));
  const f = fixture(20_500);
  const meter = raplMeter(createRaplReader({ clock: f.clock, root, subzones: true }));
  t.is(meter.packages, 2);
  const windows: PowerBatch[] = [];
  const s = createSampler({ source: f.source, clock: f.clock, node: "n1", cpuEnergy: meter, onWindow: (b) => windows.push(b) });
  s.start();
  await new Promise((r) => setImmediate(r));
  // 21 s: packages used 40 J + 60 J since start (the subzone's count must not be added again).
  f.set(21_000);
  setUj("intel-rapl:0", 41_000_000);
  setUj("intel-rapl:1", 65_000_000);
  setUj("intel-rapl:0:0", 99_000_000);
  f.set(22_000);
  await s.stop();
  // Windows 20 s and 21 s both close at stop (22 s), and 22 s with the last sample: each CPU reading
  // is taken when its window closes, and says when, so the energy is never put in the wrong span.
  t.deepEqual(windows.map((w) => w.windowStartMs), [20_000, 21_000, 22_000]);
  for (const w of windows) t.is(powerBatch.parse(w).cpu?.packages, 2);
  const cpu = windows.map((w) => w.cpu!);
  t.like(cpu[0], { energyStartMj: 0, energyEndMj: 100_000, startTMs: 20_500, endTMs: 22_000 });
  for (let i = 1; i < cpu.length; i++) {
    t.is(cpu[i]!.energyStartMj, cpu[i - 1]!.energyEndMj);
    t.is(cpu[i]!.startTMs, cpu[i - 1]!.endTMs);
  }
  t.is(cpu.at(-1)!.energyEndMj, 100_000);
});
