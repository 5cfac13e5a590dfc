import test from "ava";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createDcgmSource } from "../services/agent/dcgm-source.ts";
import { createSampler } from "../services/agent/sampler.ts";
import { gpuWindowEnergy } from "../shared/energy/mod.ts";
import { systemClock, type PowerBatch } from "../shared/mod.ts";
import { pause, until } from "./helpers/until.ts";

/** A DCGM exporter stand-in: serves whatever `text()` returns at /metrics. */
async function exporter(text: () => string): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((_req, res) => res.end(text()));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/metrics`, close: () => new Promise((r) => server.close(() => r())) };
}

const line = (name: string, gpu: number, value: string) => `${name}{gpu="${gpu}",UUID="GPU-${gpu}",modelName="NVIDIA H100 80GB HBM3"} ${value}`;

test("dcgm - reads power, the counter and clocks per GPU, with units converted", async (t) => {
  const ex = await exporter(() => [
    "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).",
    "# TYPE DCGM_FI_DEV_POWER_USAGE gauge",
    line("DCGM_FI_DEV_POWER_USAGE", 0, "312.5"),
    line("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 0, "123456789"),
    line("DCGM_FI_DEV_SM_CLOCK", 0, "1980"),
    line("DCGM_FI_DEV_POWER_USAGE", 1, "100"),
  ].join("\n"));
  t.teardown(() => ex.close());
  const source = createDcgmSource({ url: ex.url, clock: systemClock() });
  t.deepEqual((await source.describe()).gpus, [
    { index: 0, uuid: "GPU-0", name: "NVIDIA H100 80GB HBM3" },
    { index: 1, uuid: "GPU-1", name: "NVIDIA H100 80GB HBM3" },
  ]);
  const [a, b] = await source.sample();
  t.like(a, { gpu: 0, uuid: "GPU-0", powerMw: 312_500, energyMj: 123456789, smClockMhz: 1980 });
  t.like(b, { gpu: 1, powerMw: 100_000 });
  t.false("energyMj" in b!);
});

test("dcgm - NaN and DCGM's blank sentinels count as absent, never as readings", async (t) => {
  const ex = await exporter(() => [
    line("DCGM_FI_DEV_POWER_USAGE", 0, "NaN"),
    line("DCGM_FI_DEV_SM_CLOCK", 0, "9223372036854775794"), // DCGM_INT64 blank (not supported)
    line("DCGM_FI_DEV_GPU_TEMP", 0, "+Inf"),
    line("DCGM_FI_DEV_POWER_USAGE", 1, "140737488355328"), // DCGM_FP64_BLANK
    line("DCGM_FI_DEV_POWER_USAGE", 2, "250"),
    line("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 2, "9223372036854775792"),
  ].join("\n"));
  t.teardown(() => ex.close());
  const source = createDcgmSource({ url: ex.url, clock: systemClock() });
  t.deepEqual((await source.describe()).gpus.map((g) => g.index), [0, 1, 2], "every GPU the exporter names is in the inventory");
  const readings = await source.sample();
  t.deepEqual(readings.map((r) => r.gpu), [2], "GPUs with no power to read are left out, not published as 0 W");
  t.is(readings[0]!.powerMw, 250_000);
  t.false("energyMj" in readings[0]!);
});

test("dcgm - an exporter with the counter but no power: power is the counter's slope over the trailing second", async (t) => {
  const t0 = performance.now();
  // 400 W on a counter that the exporter refreshes every 100 ms, as DCGM does.
  const counterMj = () => 1e9 + 400 * Math.floor((performance.now() - t0) / 100) * 100;
  const ex = await exporter(() => [line("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 0, String(counterMj()))].join("\n"));
  t.teardown(() => ex.close());
  const source = createDcgmSource({ url: ex.url, clock: systemClock() });
  await source.describe(); // the counter's first reading: the baseline
  const powers: number[] = [];
  for (let i = 0; i < 14; i++) {
    // A reading every 100 ms, as the sampler takes them: the slope is over the trailing second.
    await pause(100);
    const [r] = await source.sample();
    t.truthy(r?.energyMj);
    powers.push(r!.powerMw);
  }
  // Over a second or more, a 100-ms step is at most ~10% of the span.
  for (const p of powers.slice(10)) t.true(Math.abs(p / 400_000 - 1) <= 0.12, `${p} mW`);
});

test("dcgm - an exporter that refreshes every second (dcgm-exporter -c; 30 s by default): energy from power, not from a counter that jumps", async (t) => {
  // 700 W; the exporter serves the values of its last collection, as dcgm-exporter does between
  // collections. The counter stands still, then jumps by a second's worth: the analyzer would take
  // each jump as a glitch (over 2 kW in 100 ms) and keep 100 ms of it.
  const t0 = Date.now();
  const ex = await exporter(() => {
    const at = Math.floor((Date.now() - t0) / 1000) * 1000;
    return [line("DCGM_FI_DEV_POWER_USAGE", 0, "700"), line("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 0, String(1e9 + 700 * at))].join("\n");
  });
  t.teardown(() => ex.close());
  const clock = systemClock();
  const windows: PowerBatch[] = [];
  const sampler = createSampler({ source: createDcgmSource({ url: ex.url, clock }), clock, node: "n1", onWindow: (b) => windows.push(b) });
  sampler.start();
  // Four 1-s windows: several of the exporter's collections, each seen standing still then jumping.
  await until(() => windows.length >= 4, 15_000, `four windows (${windows.length} so far)`);
  await sampler.stop();
  // From the second window on: the first may end before the counter is seen to stand still.
  const gpu = windows.flatMap((w) => w.gpus.filter((g) => g.gpu === 0)).slice(1);
  t.true(gpu.length >= 3 && gpu.every((g) => g.energyMj === undefined), "no counter: power is integrated");
  const totalMj = gpu.reduce((sum, g) => sum + gpuWindowEnergy(g).energyMj, 0);
  const spanMs = gpu.at(-1)!.tMs.at(-1)! - gpu[0]!.startTMs!;
  t.true(Math.abs(totalMj / (700 * spanMs) - 1) < 0.02, `${Math.round(totalMj / 1000)} J over ${spanMs} ms at 700 W`);
});
