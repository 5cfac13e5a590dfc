import test from "ava";
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { startAgent } from "../services/agent/agent.ts";
import { createNvmlSource } from "../services/agent/nvml/mod.ts";
import { KV_NODES, decodeAs, nodeInventory, systemClock, type NodeInventory, type PowerBatch } from "../shared/mod.ts";
import { fakeNvmlCopy, withFakeNvmlEnv } from "./helpers/fake-nvml.ts";
import { readStream, startTestNats } from "./helpers/nats-server.ts";
import { until } from "./helpers/until.ts";

/**
 * The node's inventory in the `nodes` KV bucket, as a fleet operator reads it: the GPUs, the driver,
 * the agent, the instances and their GPU sets, rewritten as the heartbeat. A GPU NVML counts but
 * gives no handle for (fell off the bus before the agent started) is part of the node: the inventory
 * names it, and every POWER window reports it missing, so dashboards show the energy not measured.
 */
test("agent - inventory and heartbeat in KV; a GPU without a handle is listed unreadable and missing from every window", async (t) => {
  const nats = await startTestNats();
  const clock = systemClock();
  const libraryPath = await fakeNvmlCopy();
  const source = withFakeNvmlEnv({ GPUS: 4, POWER_W: 400, NO_HANDLE: 2 }, () => createNvmlSource({ clock, libraryPath }));
  const nc = await connect({ servers: nats.url });
  const instances = [
    { id: "a", listen: "127.0.0.1:0", upstream: "http://127.0.0.1:9", gpus: [0, 1] },
    { id: "b", listen: "127.0.0.1:0", upstream: "http://127.0.0.1:9", gpus: [3] },
  ];
  const agent = await startAgent({ nc, node: "inv1", clock, source, instances, heartbeatMs: 200, publishIntervalMs: 300 });
  t.teardown(async () => {
    await agent.stop();
    await nc.close();
    await nats.stop();
  });
  const kv = await new Kvm(nc).open(KV_NODES);
  const read = async (): Promise<NodeInventory> => {
    const entry = await kv.get("inv1");
    const decoded = decodeAs(nodeInventory, entry!.value);
    if (!decoded.ok) throw new Error(`inventory fails its schema: ${decoded.detail}`);
    return decoded.value;
  };
  const first = await read();
  t.like(first, { node: "inv1", source: "nvml", unreadableGpus: [2] });
  t.deepEqual(first.gpus.map((g) => g.index), [0, 1, 3]);
  t.true(first.gpus.every((g) => g.uuid.length > 0 && g.name.length > 0), "every GPU named, with its UUID");
  t.is(typeof first.driverVersion, "string");
  t.deepEqual(first.instances.map(({ id, gpus }) => ({ id, gpus })), [{ id: "a", gpus: [0, 1] }, { id: "b", gpus: [3] }]);

  let later = first;
  await until(async () => (later = await read()).heartbeatMs > first.heartbeatMs, 5000, "a heartbeat rewriting the entry");
  await until(() => agent.stats().sampler.windows >= 3, 5000, "three windows");
  t.true(later.heartbeatMs > first.heartbeatMs, "the heartbeat rewrites the entry");
  t.is(later.startedMs, first.startedMs);

  await agent.stop();
  const windows = (await readStream<PowerBatch>(nats.url, "POWER")).map((m) => m.value);
  t.true(windows.length >= 3, `${windows.length} windows`);
  for (const w of windows) {
    t.deepEqual(w.gpus.map((g) => g.gpu), [0, 1, 3]);
    t.deepEqual(w.agent?.missingGpus, [2], `window ${w.seq}`);
  }
});
