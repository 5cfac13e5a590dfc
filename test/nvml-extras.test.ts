import test from "ava";
import { createNvmlSource } from "../services/agent/nvml/mod.ts";
import { fakeNvmlCopy, withFakeNvmlEnv } from "./helpers/fake-nvml.ts";

/**
 * Clocks, utilization and temperature are one driver call each per GPU and sample; on some hosts a
 * call costs ~0.6 ms (an H200 under gVisor: 3.8 ms for a 6-call sample), so they are read at most
 * once per `extrasIntervalMs` and carried in between, while power and energy are read every sample.
 * The test steps the source's clock by hand and changes the SM clock (the fake as root keeps a
 * locked clock and reads it back) to see when the extras are read again.
 */
async function source(extrasIntervalMs?: number) {
  let now = 1_000_000;
  const clock = { nowMs: () => now };
  const libraryPath = await fakeNvmlCopy();
  const s = withFakeNvmlEnv({ GPUS: 1, ROOT: 1 }, () => createNvmlSource({ clock, libraryPath, ...(extrasIntervalMs !== undefined ? { extrasIntervalMs } : {}) }));
  // A second source on the same library shares its fake GPUs: a change through it is one this source did not make.
  const other = withFakeNvmlEnv({ GPUS: 1, ROOT: 1 }, () => createNvmlSource({ clock, libraryPath }));
  return { s, other: other.control, advance: (ms: number) => (now += ms), close: () => Promise.all([s.close(), other.close()]) };
}

test("nvml extras - read once a second by default, carried in between; power and energy every sample", async (t) => {
  const { s, other, advance, close } = await source();
  t.teardown(close);
  const first = (await s.sample())[0]!;
  t.is(first.smClockMhz, 1980);
  other.lockGpuClocks(0, 1200, 1200); // another process (nvidia-smi, say) changes the clock
  const clocks: number[] = [];
  const energies: number[] = [first.energyMj!];
  for (let i = 1; i <= 10; i++) {
    advance(100);
    const r = (await s.sample())[0]!;
    clocks.push(r.smClockMhz!);
    energies.push(r.energyMj!);
    t.like(r, { memClockMhz: first.memClockMhz, utilPct: first.utilPct, tempC: first.tempC }, "every extra carried, not dropped");
  }
  // 100 … 800 ms after the first read: carried; from 900 ms (the interval less 10 % for jitter): read.
  t.deepEqual(clocks, [1980, 1980, 1980, 1980, 1980, 1980, 1980, 1980, 1200, 1200]);
  t.true(energies.every((e) => Number.isFinite(e)), "every reading has its own energy counter reading");
});

test("nvml extras - extrasIntervalMs 0 reads them at every sample", async (t) => {
  const { s, other, advance, close } = await source(0);
  t.teardown(close);
  t.is((await s.sample())[0]!.smClockMhz, 1980);
  other.lockGpuClocks(0, 1200, 1200);
  advance(100);
  t.is((await s.sample())[0]!.smClockMhz, 1200);
});

test("nvml extras - a clock set through the source's control is read at the next sample, not carried", async (t) => {
  const { s, advance, close } = await source();
  t.teardown(close);
  t.is((await s.sample())[0]!.smClockMhz, 1980);
  s.control.lockGpuClocks(0, 1200, 1200);
  advance(100);
  t.is((await s.sample())[0]!.smClockMhz, 1200);
  s.control.resetGpuClocks(0);
  advance(100);
  t.is((await s.sample())[0]!.smClockMhz, 1980);
});
