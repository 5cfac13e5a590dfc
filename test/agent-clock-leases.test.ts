import test from "ava";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { createNvmlSource } from "../services/agent/nvml/mod.ts";
import { nvmlClockBackend, startClockControl, type ClockBackend } from "../services/agent/clock-control.ts";
import { decode, ensureStreams, systemClock } from "../shared/mod.ts";
import { fakeNvmlCopy, withFakeNvmlEnv } from "./helpers/fake-nvml.ts";
import { startTestNats } from "./helpers/nats-server.ts";
import { pause, until } from "./helpers/until.ts";

async function setup(t: import("ava").ExecutionContext, env: Record<string, string | number> = {}, wrap?: (b: ClockBackend) => ClockBackend) {
  const nats = await startTestNats();
  const nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc), ["AUDIT"]);
  const lib = await fakeNvmlCopy();
  const source = withFakeNvmlEnv({ GPUS: 2, ROOT: 1, ...env }, () => createNvmlSource({ clock: systemClock(), libraryPath: lib }));
  const { gpus } = await source.describe();
  const backend = nvmlClockBackend(source.control);
  const control = await startClockControl({ nc, node: "n1", gpus, backend: wrap ? wrap(backend) : backend });
  t.teardown(async () => {
    try { await control.stop(); } catch { /* */ }
    await source.close();
    if (!nc.isClosed()) await nc.close();
    await nats.stop();
  });
  const ask = async (verb: string, body: unknown) => {
    const m = await nc.request(`ctl.v1.n1.${verb}`, typeof body === "string" ? body : JSON.stringify(body), { timeout: 5000 });
    return { error: m.headers?.get("Nats-Service-Error"), body: JSON.parse(new TextDecoder().decode(m.data)) };
  };
  const smClock = async (gpu: number) => (await source.sample()).find((r) => r.gpu === gpu)?.smClockMhz;
  const audits = async () => {
    const info = await (await jetstreamManager(nc)).streams.info("AUDIT");
    const c = await jetstream(nc).consumers.get("AUDIT");
    const out: { action: string; gpu?: number }[] = [];
    for (let i = 0; i < info.state.messages; i++) {
      const m = await c.next({ expires: 1000 });
      if (m) out.push(decode(m.data) as { action: string });
    }
    return out;
  };
  return { nc, control, source, ask, smClock, audits };
}

test("clock control - each controller has its own lease: Y's short lease running out leaves X's change alone", async (t) => {
  const { ask, smClock } = await setup(t);
  t.falsy((await ask("set", { gpus: [0], smClockMhz: 1200, leaseMs: 3600_000, by: "X" })).error);
  t.falsy((await ask("set", { gpus: [1], smClockMhz: 1400, leaseMs: 1000, by: "Y" })).error);
  await until(async () => (await smClock(1)) === 1980, 5000, "Y's 1 s lease to run out (GPU1 restored)");
  t.log("GPU0 (X, 1h lease) after Y's 1s lease expired:", await smClock(0));
  t.is(await smClock(0), 1200, "X's change should still be in force");
});

test("clock control - Y's renews do not keep alive a change X stopped renewing", async (t) => {
  const { ask, smClock } = await setup(t);
  t.falsy((await ask("set", { gpus: [0], smClockMhz: 1200, leaseMs: 1000, by: "X" })).error);
  t.falsy((await ask("set", { gpus: [1], smClockMhz: 1400, leaseMs: 1000, by: "Y" })).error);
  for (let i = 0; i < 4; i++) {
    await pause(500); // Y renews every 500 ms, well within its 1 s lease, while X's runs out
    await ask("renew", { leaseMs: 1000, by: "Y" }); // Y renews
  }
  t.log("GPU0 (X, not renewed, 1s lease) after 2 s:", await smClock(0));
  t.is(await smClock(0), 1980, "X's change should have been undone");
});

test("clock control - Y's reset undoes only Y's changes; a GPU X holds is refused to Y", async (t) => {
  const { ask, smClock } = await setup(t);
  await ask("set", { gpus: [0], smClockMhz: 1200, leaseMs: 60_000, by: "X" });
  await ask("set", { gpus: [1], smClockMhz: 1400, leaseMs: 60_000, by: "Y" });
  await ask("reset", { by: "Y" });
  t.log("GPU0 (X) after Y's reset:", await smClock(0));
  t.is(await smClock(1), 1980);
  const r = await ask("set", { gpus: [0], smClockMhz: 1400, by: "Y" });
  t.regex(r.error ?? "", /held by X/);
  t.is(await smClock(0), 1200);
});

test("clock control - a multi-GPU set that fails on one GPU undoes the GPUs it changed", async (t) => {
  let calls = 0;
  const { ask, smClock, control, audits } = await setup(t, {}, (b) => ({
    ...b,
    lockSmClock: async (g, lo, hi) => {
      calls++;
      if (g === 1) throw new Error("NVML GPU_IS_LOST (simulated)");
      return b.lockSmClock(g, lo, hi);
    },
  }));
  const r = await ask("set", { gpus: [0, 1], smClockMhz: 1200, leaseMs: 1000, by: "X" });
  t.log("reply:", r.error);
  t.truthy(r.error);
  await until(async () => (await smClock(0)) === 1980, 2000, "GPU0 restored within 2 s of the failed set");
  t.log("GPU0 after the failed set with a 1 s lease:", await smClock(0), "state", JSON.stringify(control.state()));
  t.log("audits", JSON.stringify((await audits()).map((a) => a.action)));
  t.is(await smClock(0), 1980);
});

test("clock control - the same through the fake NVML, GPU 1 lost after start", async (t) => {
  const { ask, smClock, control } = await setup(t, { LOST_GPU: 1, LOST_AFTER_MS: 1500 });
  await until(async () => (await smClock(1)) === undefined, 5000, "GPU 1 to be lost (left out of samples)");
  const r = await ask("set", { gpus: [0, 1], smClockMhz: 1200, leaseMs: 1000, by: "X" });
  t.log("reply:", r.error);
  await until(async () => (await smClock(0)) === 1980, 2000, "GPU0 restored within 2 s of the failed set");
  t.log("GPU0:", await smClock(0), "state", JSON.stringify(control.state()));
  t.is(await smClock(0), 1980);
});

test("clock control - clock locked, then the power limit fails: the clock is undone", async (t) => {
  const { ask, smClock, control } = await setup(t, {}, (b) => ({
    ...b,
    setPowerLimitMw: async () => {
      throw new Error("NVML NOT_SUPPORTED (simulated)");
    },
  }));
  const r = await ask("set", { gpus: [0], smClockMhz: 1200, powerLimitW: 300, leaseMs: 1000 });
  t.log("reply:", r.error);
  await until(async () => (await smClock(0)) === 1980, 1500, "GPU0 restored within the 1 s lease");
  await control.stop();
  t.log("GPU0 after the failed set + stop:", await smClock(0), JSON.stringify(control.state()));
  t.is(await smClock(0), 1980);
});

test("clock control - a set in flight when stop() runs finishes before the restore, and none runs after", async (t) => {
  let locking!: () => void;
  const inFlight = new Promise<void>((r) => (locking = r));
  const { ask, smClock, control } = await setup(t, {}, (b) => ({
    ...b,
    // simnodeClockBackend is HTTP: the lock takes a round trip; 200 ms stands in for a slow one.
    lockSmClock: async (g, lo, hi) => {
      locking();
      await pause(200); // a slow backend: stop() must arrive while the lock is in flight
      return b.lockSmClock(g, lo, hi);
    },
  }));
  const p = ask("set", { gpus: [0], smClockMhz: 1200, leaseMs: 60_000 }).catch((e) => ({ error: String(e), body: null }));
  await inFlight;
  await control.stop();
  const r = await p;
  t.log("set reply", JSON.stringify(r));
  t.log("GPU0 after stop() returned and the set finished:", await smClock(0));
  t.is(await smClock(0), 1980);
});

test("clock control - renew after expiry, a malformed renew, repeated GPUs and fractional milliwatts are answered plainly", async (t) => {
  const { ask, smClock } = await setup(t);
  // Each refused request is answered with what is wrong, and the GPU is left as it was.
  const refused: [unknown, RegExp][] = [
    ["not json", /^request is not JSON$/],
    ["", /^request is not JSON$/],
    ["{}", /^gpus: /],
    [{ gpus: [] }, /^gpus: Too small/],
    [{ gpus: [0.5], smClockMhz: 1200 }, /^gpus\.0: .*int/],
    [{ gpus: [-1] }, /^gpus\.0: Too small/],
    [{ gpus: ["0"] }, /^gpus\.0: .*expected number/],
    [{ gpus: [0], smClockMhz: 1200.5 }, /does not support an SM clock of 1200\.5 MHz/],
    [{ gpus: [0], smClockRangeMhz: [1400, 1200] }, /backwards/],
    [{ gpus: [0], smClockRangeMhz: [100.5, 1399.5] }, /supports SM clocks 210-1980 MHz/],
    [{ gpus: [0], powerLimitW: 300.0005 }, /not a whole number of milliwatts/],
    [{ gpus: [0], powerLimitW: 199.9999 }, /not a whole number of milliwatts/],
    [{ gpus: [0, 0], smClockMhz: 1200 }, /GPU listed twice/],
    [{ gpus: [0], smClockMhz: 1200, smClockRangeMhz: [1000, 1400] }, /not both/],
    [{ gpus: [0], leaseMs: 1e9 }, /^leaseMs: Too big/],
    ['{"gpus":[0],"smClockMhz":1e400}', /^smClockMhz: /],
  ];
  for (const [body, why] of refused) {
    const r = await ask("set", body);
    t.regex(r.error ?? "", why, JSON.stringify(body));
    t.is(await smClock(0), 1980, JSON.stringify(body));
  }
  t.falsy((await ask("set", { gpus: [0], smClockRangeMhz: [1201, 1399] })).error, "a range within the supported clocks");
  t.is(await smClock(0), 1399);
  await ask("reset", {});
  t.falsy((await ask("set", { gpus: [0] })).error, "nothing to change is no error");
  await ask("reset", {});
  t.deepEqual((await ask("renew", { leaseMs: 5000 })).body, { ok: true, active: false }, "renew with nothing held");
  // A schema error's message is multi-line JSON: it must still reach the caller, on one line.
  for (const verb of ["renew", "reset"]) {
    const r = await ask(verb, { leaseMs: "x", by: 5 });
    t.regex(r.error ?? "", /^(leaseMs|by): .*; (leaseMs|by): /, verb);
  }
});

test("clock control - a lease that runs out while NATS is closed still restores every GPU, without an unhandled rejection", async (t) => {
  const rejections: unknown[] = [];
  const h = (e: unknown) => rejections.push(e);
  process.on("unhandledRejection", h);
  t.teardown(() => process.off("unhandledRejection", h));
  const { ask, smClock, nc } = await setup(t);
  await ask("set", { gpus: [0, 1], smClockMhz: 1200, leaseMs: 1000 });
  await nc.close();
  await until(async () => (await smClock(0)) === 1980 && (await smClock(1)) === 1980, 3000, "the 1 s lease to run out and restore both GPUs");
  t.log("GPU0", await smClock(0), "GPU1", await smClock(1), "unhandled:", rejections.map(String));
  t.is(await smClock(1), 1980);
  t.deepEqual(rejections, []);
});
