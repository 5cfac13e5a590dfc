import test from "ava";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { ALL_STREAMS, ConfigError, clusterSize, defaultReplicas, ensureStreams, openBucket, resolveReplicas, streamConfig } from "../shared/mod.ts";
import { startLocalCluster, type LocalCluster } from "../infra/local-cluster.ts";
import { startAgent } from "../services/agent/agent.ts";
import { agentCommand } from "../services/agent/command.ts";
import { startFleet } from "../services/fleet/emulator.ts";
import { loadCommand } from "../services/loadgen/command.ts";
import { assertNewRun } from "../services/loadgen/coordinator.ts";
import { parseCommand } from "../shared/config.ts";
import { createNvmlSource } from "../services/agent/nvml/mod.ts";
import { KV_NODES, systemClock } from "../shared/mod.ts";
import { fakeNvmlCopy, withFakeNvmlEnv } from "./helpers/fake-nvml.ts";
import { startTestNats, type TestNats } from "./helpers/nats-server.ts";

/**
 * Issue 19: replication is configuration. Against a 3-node cluster every stream and KV bucket the
 * services create is R3 unless --replicas says otherwise; against a single server, R1. One cluster
 * and one single server serve the whole file; the tests run one at a time and each starts from no
 * streams.
 */
let cluster: LocalCluster;
let single: TestNats;

test.before(async () => {
  [cluster, single] = await Promise.all([startLocalCluster(), startTestNats()]);
});
test.after.always(async () => {
  await Promise.all([cluster?.stop(), single?.stop()]);
});

async function fresh(t: import("ava").ExecutionContext, servers: string | string[]): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
  t.timeout(60_000);
  const nc = await connect({ servers });
  t.teardown(() => nc.close());
  // Deleting R3 streams waits for the cluster's consensus: on a busy 2-core machine, past 5 s.
  const jsm = await jetstreamManager(nc, { timeout: 20_000 });
  for await (const name of jsm.streams.names()) await jsm.streams.delete(name);
  return { nc, jsm };
}

test("replicas - the default from a server's INFO: its cluster's size capped at 3, 1 unclustered or when peers are not advertised", (t) => {
  t.is(clusterSize({}), 1);
  t.is(clusterSize({ cluster: "c", connect_urls: ["a:1", "b:1", "a:1"] }), 2, "each server once");
  t.is(clusterSize({ cluster: "c" }), undefined);
  t.is(defaultReplicas({}), 1);
  t.is(defaultReplicas({ cluster: "c", connect_urls: ["a:1", "b:1"] }), 2);
  t.is(defaultReplicas({ cluster: "c", connect_urls: ["a:1", "b:1", "c:1", "d:1", "e:1"] }), 3);
  t.is(defaultReplicas({ cluster: "c" }), 1);
});

test.serial("replicas - resolveReplicas: 3 on the 3-node cluster (from a connection or a manager), 1 on a single server, the requested count when given", async (t) => {
  const { nc, jsm } = await fresh(t, cluster.urls[1]!);
  t.is(resolveReplicas(nc), 3);
  t.is(resolveReplicas(jsm), 3);
  t.is(resolveReplicas(nc, 1), 1);
  const one = await fresh(t, single.url);
  t.is(resolveReplicas(one.nc), 1);
  t.is(resolveReplicas(one.jsm), 1);
  t.is(resolveReplicas(one.nc, 3), 3, "asked for is asked for: the server says whether it can");
  const err = t.throws(() => resolveReplicas(nc, 7), { instanceOf: ConfigError });
  t.is(err?.key, "--replicas");
});

test.serial("replicas - ensureStreams with defaults creates every stream R3 on the cluster", async (t) => {
  const { jsm } = await fresh(t, cluster.servers);
  const ensured = await ensureStreams(jsm);
  t.deepEqual(ensured.map((e) => [e.name, e.replicas, e.outcome]), ALL_STREAMS.map((n) => [n, 3, "created"]));
  for (const name of ALL_STREAMS) {
    const si = await jsm.streams.info(name);
    t.is(si.config.num_replicas, 3, name);
    t.is((si.cluster?.replicas ?? []).length, 2, `${name}: a leader and two followers`);
  }
  // Idempotent: a second start finds them as they are.
  t.true((await ensureStreams(jsm)).every((e) => e.outcome === "kept" && e.replicas === 3));
});

test.serial("replicas - ensureStreams scales an R1 stream up to the count asked for and leaves one with more alone", async (t) => {
  const { jsm } = await fresh(t, cluster.servers);
  await jsm.streams.add(streamConfig("POWER", { replicas: 1 }));
  await jsm.streams.add(streamConfig("WORK", { replicas: 3 }));
  const lines: string[] = [];
  const ensured = await ensureStreams(jsm, ["POWER", "WORK"], { replicas: 2, log: (l) => lines.push(l) });
  t.deepEqual(ensured.map((e) => [e.name, e.replicas, e.outcome]), [["POWER", 2, "scaled"], ["WORK", 3, "kept"]]);
  const power = await jsm.streams.info("POWER");
  t.is(power.config.num_replicas, 2);
  t.truthy(power.cluster?.leader, "ensureStreams returns once the scaled stream has its leader again");
  t.is((await jsm.streams.info("WORK")).config.num_replicas, 3);
  t.regex(lines.join("\n"), /POWER: scaled from 1 to 2 replicas/);
});

test.serial("replicas - a stream this identity may not scale up stays as it is, with a warning that names it and the fix", async (t) => {
  t.timeout(60_000);
  // As a fleet's node identities (infra/nats/auth.ts): JetStream reads only.
  const reader = { publish: { allow: ["$JS.API.INFO", "$JS.API.STREAM.INFO.*"] }, subscribe: { allow: ["_INBOX.>"] } };
  const nats = await startTestNats({ config: `authorization { users = [ { user: admin, password: admin }, { user: reader, password: reader, permissions: ${JSON.stringify(reader)} } ] }` });
  t.teardown(() => nats.stop());
  const admin = await connect({ servers: nats.url, user: "admin", pass: "admin" });
  t.teardown(() => admin.close());
  await (await jetstreamManager(admin)).streams.add(streamConfig("POWER", { replicas: 1 }));
  const nc = await connect({ servers: nats.url, user: "reader", pass: "reader" });
  t.teardown(() => nc.close());
  const lines: string[] = [];
  const [power] = await ensureStreams(await jetstreamManager(nc), ["POWER"], { replicas: 3, log: (l) => lines.push(l) });
  t.like(power, { name: "POWER", replicas: 1, outcome: "short" });
  t.regex(lines.join("\n"), /WARNING: POWER has 1 replica\(s\), fewer than 3, and could not be scaled up \(.*[Pp]ermissions [Vv]iolation.*--replicas 3/);
});

test.serial("replicas - more replicas than the cluster can place fail with an error naming --replicas", async (t) => {
  const { jsm } = await fresh(t, cluster.servers);
  const err = await t.throwsAsync(ensureStreams(jsm, ["LOAD"], { replicas: 5 }), { instanceOf: ConfigError });
  t.is(err?.key, "--replicas");
  t.regex(err!.message, /stream LOAD: the cluster cannot place 5 replicas/);
});

test.serial("replicas - ensureStreams with defaults on a single server creates R1 streams", async (t) => {
  const { jsm } = await fresh(t, single.url);
  const ensured = await ensureStreams(jsm, ["POWER", "AUDIT"]);
  t.deepEqual(ensured.map((e) => [e.name, e.replicas, e.outcome]), [["POWER", 1, "created"], ["AUDIT", 1, "created"]]);
});

test.serial("replicas - openBucket creates R3 buckets on the cluster, R1 on a single server, and scales an R1 bucket up", async (t) => {
  const { nc, jsm } = await fresh(t, cluster.servers);
  const kv = await openBucket(nc, "replicas-test", { history: 1, ttl: 60_000 });
  t.is((await kv.status()).replicas, 3);
  t.is((await jsm.streams.info("KV_replicas-test")).config.max_msgs_per_subject, 1, "the options given are kept");
  await kv.put("k", new Uint8Array([1]));
  // A bucket an earlier version made R1 follows the streams once a service opens it.
  await openBucket(nc, "legacy", { history: 1 }, { replicas: 1 });
  const lines: string[] = [];
  const legacy = await openBucket(nc, "legacy", { history: 1 }, { log: (l) => lines.push(l) });
  t.is((await legacy.status()).replicas, 3);
  t.regex(lines.join("\n"), /KV_legacy: scaled from 1 to 3/);

  const one = await fresh(t, single.url);
  t.is((await (await openBucket(one.nc, "replicas-test", { history: 1 })).status()).replicas, 1);
});

test.serial("replicas - an agent started against the cluster creates its streams and the nodes bucket R3", async (t) => {
  const { nc, jsm } = await fresh(t, cluster.servers);
  const clock = systemClock();
  const libraryPath = await fakeNvmlCopy();
  const source = withFakeNvmlEnv({ GPUS: 1, POWER_W: 300 }, () => createNvmlSource({ clock, libraryPath }));
  const agent = await startAgent({ nc, node: "r3", clock, source, instances: [{ id: "i0", listen: "127.0.0.1:0", upstream: "http://127.0.0.1:9", gpus: [0] }] });
  await agent.stop();
  for (const name of ["POWER", "REQUESTS", "WORK", `KV_${KV_NODES}`]) t.is((await jsm.streams.info(name)).config.num_replicas, 3, name);
});

test.serial("replicas - the load generator's LOAD stream follows the cluster, the fleet emulator's streams follow replicas given", async (t) => {
  const { nc, jsm } = await fresh(t, cluster.servers);
  await assertNewRun(nc, "r3-run");
  t.is((await jsm.streams.info("LOAD")).config.num_replicas, 3);
  await startFleet({ nc, nodes: 1, durationS: 1, seed: 1, replicas: 2 }).done();
  for (const name of ["POWER", "WORK", "REQUESTS"]) t.is((await jsm.streams.info(name)).config.num_replicas, 2, name);
});

test("replicas - --replicas and JOULESTREAM_REPLICAS reach the config; a count JetStream cannot have names the key", (t) => {
  const parse = (argv: string[], env: NodeJS.ProcessEnv = {}) => parseCommand(agentCommand.spec, argv, env);
  const config = (p: ReturnType<typeof parse>) => (p.help ? undefined : p.config.replicas);
  t.is(config(parse([])), undefined, "unset: the server decides");
  t.is(config(parse(["--replicas", "3"])), 3);
  t.is(config(parse([], { JOULESTREAM_REPLICAS: "2" })), 2);
  t.is(config(parse(["--replicas", "1"], { JOULESTREAM_REPLICAS: "3" })), 1, "the flag wins");
  t.throws(() => parse(["--replicas", "6"]), { instanceOf: ConfigError, message: /^--replicas:/ });
  t.throws(() => parse([], { JOULESTREAM_REPLICAS: "0" }), { instanceOf: ConfigError, message: /^JOULESTREAM_REPLICAS:/ });
  t.throws(() => parseCommand(loadCommand.spec, ["--workload", "short", "--rate", "1", "--duration", "1", "--target", "http://127.0.0.1:9", "--replicas", "3"], {}), { message: /--replicas.*needs --nats/ });
});
