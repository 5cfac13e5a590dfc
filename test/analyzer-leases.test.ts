import test from "ava";
import { connect } from "@nats-io/transport-node";
import { startPartitionLeases } from "../services/analyzer/partitions.ts";
import { startTestNats } from "./helpers/nats-server.ts";
import { until } from "./helpers/until.ts";

/**
 * Partition leases against a real nats-server: a partition is reported owned only once its
 * consumers are bound (onAcquire resolved), and a take-over that fails lets the lease go.
 */
async function setup(t: import("ava").ExecutionContext) {
  const nats = await startTestNats();
  const nc = await connect({ servers: nats.url });
  t.teardown(async () => {
    await nc.close();
    await nats.stop();
  });
  return nc;
}

test("leases - a standby reports the partition only after binding it, not while it is still taking it over", async (t) => {
  const nc = await setup(t);
  const noop = async () => {};
  const a = await startPartitionLeases({ nc, group: "g1", replicaId: "a", partitions: 1, ttlMs: 2000, onAcquire: noop, onRelease: noop });
  let binding: (() => void) | undefined;
  const b = await startPartitionLeases({ nc, group: "g1", replicaId: "b", partitions: 1, ttlMs: 2000, onAcquire: () => new Promise<void>((r) => (binding = r)), onRelease: noop });
  t.deepEqual([a.owned(), b.owned()], [[0], []]);
  await a.stop();
  await until(() => binding !== undefined, 6000, "the standby to start taking the partition over");
  t.truthy(binding, "the standby started taking the partition over");
  t.deepEqual(b.owned(), [], "not owned while its consumers are being bound");
  binding!();
  await until(() => b.owned().length > 0, 1000, "the standby to report the partition once bound");
  t.deepEqual(b.owned(), [0]);
  await b.stop();
});

test("leases - a take-over that fails lets the lease go, so another replica can have the partition", async (t) => {
  const nc = await setup(t);
  const noop = async () => {};
  let released = 0;
  const broken = await startPartitionLeases({
    nc,
    group: "g2",
    replicaId: "broken",
    partitions: 1,
    ttlMs: 5000,
    onAcquire: () => Promise.reject(new Error("consumer could not be bound")),
    onRelease: async () => void released++,
  });
  t.deepEqual(broken.owned(), []);
  t.is(released, 1);
  // Its lease is gone at once (not after the 5 s TTL): a healthy replica takes the partition.
  const healthy = await startPartitionLeases({ nc, group: "g2", replicaId: "healthy", partitions: 1, ttlMs: 5000, onAcquire: noop, onRelease: noop });
  t.deepEqual(healthy.owned(), [0]);
  await healthy.stop();
  await broken.stop();
});
