import test from "ava";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { streamConfig } from "../shared/streams.ts";
import { startLocalCluster } from "../infra/local-cluster.ts";
import { isProcessAlive } from "../infra/ports.ts";

test("nats cluster - the three configs form a JetStream cluster that keeps an R3 stream writable with a node down", async (t) => {
  t.timeout(60_000);
  const cluster = await startLocalCluster();
  t.teardown(() => cluster.stop());
  t.is(cluster.urls.length, 3);

  const nc = await connect({ servers: cluster.urls, name: "r3-test" });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const si = await jsm.streams.add(streamConfig("POWER", { replicas: 3 }));
  t.is(si.config.num_replicas, 3);
  t.is(si.cluster?.name, "joulestream");
  const peers = [si.cluster!.leader, ...(si.cluster!.replicas ?? []).map((r) => r.name)].sort();
  t.deepEqual(peers, ["n1", "n2", "n3"]);

  const js = jetstream(nc);
  t.is((await js.publish("power.v1.node-1", new Uint8Array([1]))).stream, "POWER");

  // With one follower down the other two are a quorum: writes are still acknowledged. (A follower
  // this client is not connected to, so the test measures the stream, not a client reconnect.)
  const spare = new Set([`nats-${si.cluster!.leader}`, `nats-${nc.info?.server_name}`]);
  const follower = cluster.nodes.find((n) => !spare.has(n.proc.name))!;
  await follower.stop();
  t.false(await isProcessAlive(follower.proc.pid));
  const ack = await js.publish("power.v1.node-1", new Uint8Array([2]));
  t.is(ack.seq, 2);
  t.is((await jsm.streams.info("POWER")).state.messages, 2);
});
