import test from "ava";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { createNvmlSource } from "../services/agent/nvml/mod.ts";
import { nvmlClockBackend, startClockControl } from "../services/agent/clock-control.ts";
import { decode, ensureStreams, systemClock } from "../shared/mod.ts";
import { fakeNvmlCopy, withFakeNvmlEnv } from "./helpers/fake-nvml.ts";
import { startTestNats } from "./helpers/nats-server.ts";
import { until } from "./helpers/until.ts";

async function setup(t: import("ava").ExecutionContext, root = true) {
  const nats = await startTestNats();
  const nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc), ["AUDIT"]);
  const lib = await fakeNvmlCopy();
  const source = withFakeNvmlEnv({ GPUS: 2, ...(root ? { ROOT: 1 } : {}) }, () => createNvmlSource({ clock: systemClock(), libraryPath: lib }));
  const { gpus } = await source.describe();
  const control = await startClockControl({ nc, node: "n1", gpus, backend: nvmlClockBackend(source.control) });
  t.teardown(async () => {
    await control.stop();
    await source.close();
    await nc.close();
    await nats.stop();
  });
  const ask = async (verb: string, body: unknown) => {
    const m = await nc.request(`ctl.v1.n1.${verb}`, JSON.stringify(body), { timeout: 5000 });
    return { error: m.headers?.get("Nats-Service-Error"), body: JSON.parse(new TextDecoder().decode(m.data)) };
  };
  const smClock = async (gpu: number) => (await source.sample()).find((r) => r.gpu === gpu)!.smClockMhz;
  return { nc, control, source, ask, smClock };
}

test("clock control - locks a supported SM clock through NVML and restores it on stop, audited", async (t) => {
  const { nc, control, ask, smClock } = await setup(t);
  const r = await ask("set", { gpus: [1], smClockMhz: 1400, by: "test" });
  t.falsy(r.error, JSON.stringify(r.body));
  t.is(await smClock(1), 1400);
  t.is(await smClock(0), 1980);
  await control.stop();
  t.is(await smClock(1), 1980);
  const js = jetstream(nc);
  const c = await js.consumers.get("AUDIT");
  const actions: string[] = [];
  for (let i = 0; i < 2; i++) {
    const m = await c.next({ expires: 2000 });
    if (m) actions.push((decode(m.data) as { action: string }).action);
  }
  t.deepEqual(actions, ["set", "restore"]);
});

test("clock control - refuses clocks the GPU does not support, naming the nearest ones", async (t) => {
  const { ask, smClock } = await setup(t);
  const r = await ask("set", { gpus: [0], smClockMhz: 1234 });
  t.is(r.error, "GPU 0 does not support an SM clock of 1234 MHz (nearest supported: 1200, 1400, 1000)");
  t.is(await smClock(0), 1980);
  const r2 = await ask("set", { gpus: [7], smClockMhz: 1400 });
  t.regex(r2.error ?? "", /no GPU 7/);
  const r3 = await ask("set", { gpus: [0], powerLimitW: 900 });
  t.regex(r3.error ?? "", /≤ 700 W/);
});

test("clock control - a lease that is not renewed is undone", async (t) => {
  const { ask, smClock } = await setup(t);
  await ask("set", { gpus: [0], smClockMhz: 1200, leaseMs: 1000 });
  t.is(await smClock(0), 1200);
  await until(async () => (await smClock(0)) === 1980, 5000, "the expired lease's restore of GPU 0");
  t.is(await smClock(0), 1980);
});

test("clock control - without root the NVML error comes back to the caller", async (t) => {
  const { ask } = await setup(t, false);
  const r = await ask("set", { gpus: [0], smClockMhz: 1200 });
  t.regex(r.error ?? "", /NO_PERMISSION/);
});

test("clock control - the simulated node takes the same control through its admin endpoint", async (t) => {
  const { startSimnode } = await import("../services/simnode/server.ts");
  const { simnodeClockBackend } = await import("../services/agent/clock-control.ts");
  const { createDcgmSource } = await import("../services/agent/dcgm-source.ts");
  const nats = await startTestNats();
  const nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc), ["AUDIT"]);
  const sim = await startSimnode({ gpus: 2, tp: 2, model: "llama-3-8b" });
  const source = createDcgmSource({ url: sim.metricsUrl, clock: systemClock(), kind: "sim" });
  const { gpus } = await source.describe();
  const control = await startClockControl({ nc, node: "s1", gpus, backend: simnodeClockBackend(sim.url) });
  t.teardown(async () => {
    await control.stop();
    await sim.stop();
    await nc.close();
    await nats.stop();
  });
  const smClock = async () => (await source.sample())[0]!.smClockMhz;
  const m = await nc.request("ctl.v1.s1.set", JSON.stringify({ gpus: [0, 1], smClockMhz: 1200, by: "test" }), { timeout: 5000 });
  t.falsy(m.headers?.get("Nats-Service-Error"));
  t.is(await smClock(), 1200);
  await control.stop();
  t.is(await smClock(), 1980);
});
