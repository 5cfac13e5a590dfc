import test from "ava";
import { connect } from "@nats-io/transport-node";
import { startAgent } from "../services/agent/agent.ts";
import { createNvmlSource } from "../services/agent/nvml/mod.ts";
import { systemClock, type PowerBatch } from "../shared/mod.ts";
import { fakeNvmlCopy, withFakeNvmlEnv } from "./helpers/fake-nvml.ts";
import { readStream, startTestNats } from "./helpers/nats-server.ts";
import { pause } from "./helpers/until.ts";

/**
 * Issue 3's energy acceptance, end to end: the agent samples the fake libnvidia-ml (8 GPUs, each at
 * its own constant power) through koffi at 10 Hz for 60 s and publishes POWER windows to a real
 * nats-server; what is read back from the stream must carry the counter's energy within 0.1%, and
 * every power sample must be the model's. JOULESTREAM_ENERGY_S shortens the run for quick local runs.
 */
const RUN_S = Number(process.env.JOULESTREAM_ENERGY_S ?? 60);
const POWERS_W = [300, 310, 325, 350, 400, 450, 500, 700];


test(`agent - fake NVML at constant power: ${RUN_S} s of published POWER carry the counter's energy within 0.1%, every sample the model's power`, async (t) => {
  t.timeout((RUN_S + 60) * 1000);
  const nats = await startTestNats();
  const clock = systemClock();
  const libraryPath = await fakeNvmlCopy();
  const source = withFakeNvmlEnv({ GPUS: POWERS_W.length, POWER_W: POWERS_W.join(",") }, () => createNvmlSource({ clock, libraryPath }));
  const nc = await connect({ servers: nats.url });
  const agent = await startAgent({ nc, node: "e1", clock, source, instances: [{ id: "i0", listen: "127.0.0.1:0", upstream: "http://127.0.0.1:9", gpus: [0, 1, 2, 3, 4, 5, 6, 7] }] });
  t.teardown(async () => {
    await agent.stop();
    await nc.close();
    await nats.stop();
  });
  // The run's length is what is measured: RUN_S s of sampling, whatever happens meanwhile.
  await pause(RUN_S * 1000);
  await agent.stop();
  t.is(agent.stats().publisher.dropped, 0);

  const windows = (await readStream<PowerBatch>(nats.url, "POWER")).map((m) => m.value);
  t.deepEqual(windows.map((w) => w.seq), Array.from({ length: windows.length }, (_, i) => i), "every window, in order");
  t.true(windows.length >= RUN_S, `${windows.length} windows in ${RUN_S} s`);
  for (const [gpu, watts] of POWERS_W.entries()) {
    const cols = windows.map((w) => w.gpus.find((g) => g.gpu === gpu)!);
    t.true(cols.every((c) => c !== undefined && c.energyMj !== undefined && c.energyStartMj !== undefined), `gpu ${gpu}: every window carries the counter`);
    // Windows chain: each one starts at the reading that closed the one before.
    t.true(cols.slice(1).every((c, i) => c.energyStartMj === cols[i]!.energyMj!.at(-1)), `gpu ${gpu}: windows chain on the counter`);
    // The energy the windows publish is the sum of their counter deltas.
    const publishedMj = cols.reduce((sum, c) => sum + c.energyMj!.at(-1)! - c.energyStartMj!, 0);
    const tMs = cols.flatMap((c) => c.tMs);
    const powerMw = cols.flatMap((c) => c.powerMw);
    const counterMj = cols.at(-1)!.energyMj!.at(-1)! - cols[0]!.energyStartMj!;
    t.true(Math.abs(publishedMj / counterMj - 1) < 1e-9, `gpu ${gpu}: published ${publishedMj} mJ, counter moved ${counterMj} mJ`);
    // Against the model: constant power × the time between the first and last reading.
    const spanMs = tMs.at(-1)! - (cols[0]!.startTMs ?? tMs[0]!);
    t.true(spanMs >= (RUN_S - 2) * 1000, `gpu ${gpu}: ${spanMs} ms of readings`);
    const modelMj = watts * spanMs; // W × ms = mJ
    t.true(Math.abs(publishedMj / modelMj - 1) < 0.001, `gpu ${gpu}: published ${publishedMj} mJ vs ${watts} W × ${spanMs} ms = ${modelMj} mJ`);
    t.true(powerMw.every((p) => p === watts * 1000), `gpu ${gpu}: every power sample is ${watts} W`);
  }
});
