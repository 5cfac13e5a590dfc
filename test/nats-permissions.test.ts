import test from "ava";
import { randomBytes } from "node:crypto";
import { connect } from "@nats-io/transport-node";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { natsAuthConfig } from "../infra/nats/auth.ts";
import { loadgenInboxPrefix, loadgenUser, nodeInboxPrefix, subjectId, subjects } from "../shared/subjects.ts";
import { execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { startEchoServer } from "./helpers/echo-server.ts";
import { ensureStreams, encode, decode } from "../shared/mod.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSpool } from "../shared/spool.ts";
import { createOutbox } from "../shared/outbox.ts";
import { startTestNats } from "./helpers/nats-server.ts";
import { errorMessage } from "../shared/errors.ts";
import { pause, until, untilSaid } from "./helpers/until.ts";

const pw = () => randomBytes(12).toString("hex");

/** Resolves with the permission error the server sent for this connection, or undefined. */
function permissionErrors(nc: NatsConnection): string[] {
  const errs: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === "error") errs.push(String((s as { error?: Error }).error?.message ?? s.type));
  })();
  return errs;
}

/** A nats-server with the generated authorization for nodes node-a and node-b, and the operator connected. */
async function securedNats(t: import("ava").ExecutionContext) {
  const a = { id: "node-a", password: pw() };
  const b = { id: "node-b", password: pw() };
  const op = { user: "operator", password: pw() };
  const nats = await startTestNats({ config: natsAuthConfig({ nodes: [a, b], operator: op }) });
  t.teardown(() => nats.stop());
  const operator = await connect({ servers: nats.url, user: op.user, pass: op.password });
  t.teardown(() => operator.close());
  await ensureStreams(await jetstreamManager(operator), ["POWER", "REQUESTS", "WORK", "AUDIT"]);
  return { a, b, nats, operator };
}

test("permissions - node A cannot publish as node B or lock node B's clocks; the operator can", async (t) => {
  const { a, b, nats, operator } = await securedNats(t);

  const ncA = await connect({ servers: nats.url, user: a.id, pass: a.password, inboxPrefix: nodeInboxPrefix(a.id) });
  t.teardown(() => ncA.close());
  const errsA = permissionErrors(ncA);
  const js = jetstream(ncA);

  // Its own subjects: accepted and stored.
  const ack = await js.publish("power.v1.node-a", encode({ ok: true }));
  t.is(ack.stream, "POWER");
  // Start-up calls the agent makes are allowed too.
  await ensureStreams(await jetstreamManager(ncA), ["POWER", "REQUESTS", "WORK"]);

  // Another node's subject: the server refuses it, and nothing is stored.
  await t.throwsAsync(js.publish("power.v1.node-b", encode({ spoof: true }), { timeout: 1500 }));
  const info = await (await jetstreamManager(operator)).streams.info("POWER", { subjects_filter: ">" });
  t.deepEqual(Object.keys(info.state.subjects ?? {}), ["power.v1.node-a"]);

  // Node B's clock control: node A may not even send the request.
  const ctlB = operator.subscribe("ctl.v1.node-b.>");
  let ctlSeen = 0;
  void (async () => {
    for await (const m of ctlB) {
      ctlSeen++;
      m.respond("ok");
    }
  })();
  await operator.flush();
  await t.throwsAsync(ncA.request("ctl.v1.node-b.set", JSON.stringify({ gpus: [0], smClockMhz: 800 }), { timeout: 1000 }));
  t.is(ctlSeen, 0);
  // Node A may not answer node B's control subject either: the server closes that subscription.
  const sub = ncA.subscribe("ctl.v1.node-b.>");
  const closed = await Promise.race([sub.closed, pause(3000).then(() => "still open")]); // the deadline for the server to close it
  t.true(closed instanceof Error && /permission/i.test(closed.message), String(closed));
  t.true(errsA.some((e) => /permission/i.test(e)), errsA.join("; "));

  // The operator can reach node B's control subject.
  const reply = await operator.request("ctl.v1.node-b.set", "{}", { timeout: 1000 });
  t.is(new TextDecoder().decode(reply.data), "ok");
});

test("nats permissions - a node cannot read the fleet's replies through _INBOX.> nor ack or terminate the analyzer's messages", async (t) => {
  const { a, b, nats, operator } = await securedNats(t);
  const jsm = await jetstreamManager(operator);
  const ncB = await connect({ servers: nats.url, user: b.id, pass: b.password, inboxPrefix: nodeInboxPrefix(b.id) });
  t.teardown(() => ncB.close());
  const ncA = await connect({ servers: nats.url, user: a.id, pass: a.password, inboxPrefix: nodeInboxPrefix(a.id) });
  t.teardown(() => ncA.close());
  const errsA = permissionErrors(ncA);

  // Node A listens on every inbox.
  const seen: { subject: string; reply?: string; body: string }[] = [];
  const sniff = ncA.subscribe("_INBOX.>");
  void (async () => {
    try { for await (const m of sniff) {
      seen.push({ subject: m.subject, ...(m.reply ? { reply: m.reply } : {}), body: new TextDecoder().decode(m.data).slice(0, 80) });
      // allow_responses: answer whatever came with a reply subject (here: the analyzer's $JS.ACK).
      if (m.reply?.startsWith("$JS.ACK")) m.respond("+TERM");
    } } catch { /* refused by the server after the fix */ }
  })();
  await ncA.flush();

  // Node B publishes its data; the analyzer (operator) pulls it.
  for (let i = 0; i < 3; i++) await jetstream(ncB).publish("power.v1.node-b", encode({ v: 1, node: "node-b", secret: `b-${i}` }));
  await jsm.consumers.add("POWER", { durable_name: "analyzer", ack_policy: AckPolicy.Explicit, ack_wait: 30_000_000_000 });
  const c = await jetstream(operator).consumers.get("POWER", "analyzer");
  const got: string[] = [];
  for (let i = 0; i < 3; i++) {
    const m = await c.next({ expires: 2000 });
    if (m) got.push(JSON.stringify(decode(m.data))); // the analyzer has not acked (yet)
  }
  await pause(500); // time for node A's +TERMs to land, if the server let them through: nothing to wait for
  const info = await jsm.consumers.info("POWER", "analyzer");
  t.log("analyzer got", got.length, "messages; node A saw:", JSON.stringify(seen.slice(0, 6), null, 0));
  t.log("consumer after node A's +TERM: ack_floor", info.ack_floor.consumer_seq, "num_ack_pending", info.num_ack_pending);
  t.log("node A permission errors:", errsA);

  // Other probes
  const probes: Record<string, string> = {};
  for (const subj of ["$JS.API.STREAM.DELETE.POWER", "$JS.API.STREAM.PURGE.POWER", "$JS.API.CONSUMER.CREATE.POWER", "$KV.nodes.node-b", "$JS.API.STREAM.INFO.POWER", "$JS.API.CONSUMER.INFO.POWER.analyzer"]) {
    try {
      const r = await ncA.request(subj, "{}", { timeout: 800 });
      probes[subj] = new TextDecoder().decode(r.data).slice(0, 100);
    } catch (e) {
      probes[subj] = `refused/timeout: ${errorMessage(e)}`;
    }
  }
  t.log(JSON.stringify(probes, null, 1));
  t.true(seen.every((s) => !s.body.includes("node-b")), "node A must not see node B's data");
  t.is(info.num_ack_pending, 3, "node A must not be able to ack the analyzer's messages");
});

test("nats permissions - the agent with --allow-clock-control runs under its node identity once the analyzer created AUDIT and the nodes bucket", async (t) => {
  const { spawn } = await import("node:child_process");
  const { fileURLToPath } = await import("node:url");
  const { startSimnode } = await import("../services/simnode/server.ts");
  const a = { id: "node-a", password: pw() };
  const op = { user: "operator", password: pw() };
  const nats = await startTestNats({ config: natsAuthConfig({ nodes: [a], operator: op }) });
  t.teardown(() => nats.stop());
  const operator = await connect({ servers: nats.url, user: op.user, pass: op.password });
  t.teardown(() => operator.close());
  // As in production: the analyzer (operator identity) has started and created its streams.
  await ensureStreams(await jetstreamManager(operator), ["POWER", "WORK", "REQUESTS", "LOAD", "ENERGY", "DEADLETTER", "AUDIT"]);
  await new (await import("@nats-io/kv")).Kvm(operator).create("nodes", { history: 1 });
  const sim = await startSimnode({ gpus: 2, tp: 2, model: "llama-3-8b" });
  t.teardown(() => sim.stop());
  const { mkdtempSync, rmSync } = await import("node:fs");
  const spool = mkdtempSync(`${(await import("node:os")).tmpdir()}/inbox-spool-`);
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));
  const p = spawn(process.execPath, [bin, "agent", "--nats", nats.url, "--user", a.id, "--password", a.password, "--node-id", a.id, "--source", "sim", "--dcgm-url", sim.metricsUrl, "--allow-clock-control", "--upstream", sim.url, "--listen", "127.0.0.1:0", "--spool-dir", spool], { stdio: ["ignore", "pipe", "pipe"] });
  t.teardown(() => void p.kill("SIGKILL"));
  let err = "";
  p.stderr!.on("data", (d) => (err += d));
  await untilSaid(p, () => err, /publishing to/, 30_000);
  t.log("agent stderr at start:", err);
  const r = await operator.request("ctl.v1.node-a.set", JSON.stringify({ gpus: [0], smClockMhz: 1200 }), { timeout: 5000 });
  t.log("set reply", new TextDecoder().decode(r.data).slice(0, 100));
  const { Kvm } = await import("@nats-io/kv");
  const kv = await new Kvm(operator).open("nodes");
  // Under its identity the agent has put its inventory, published a window and audited the set.
  const jsmOp = await jetstreamManager(operator);
  const has = async (stream: string) => (await jsmOp.streams.info(stream)).state.messages > 0;
  await until(async () => (await has("AUDIT")) && (await has("POWER")), 5000, "the set's audit and a POWER window from node-a");
  const e = await kv.get("node-a");
  t.log("kv entry", e?.length);
  t.log("agent stderr:", err);
  t.truthy(e);
  t.notRegex(err, /Permissions Violation|permission/i);
});

test("nats permissions - a spool left by another node id is dropped, counted, instead of blocking this node's publishing for ever", async (t) => {
  const { b, nats, operator } = await securedNats(t);
  const dir = mkdtempSync(join(tmpdir(), "spool-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // A previous run as node-a, NATS unreachable: 3 windows left in the spool dir.
  const old = createSpool({ dir });
  for (let i = 0; i < 3; i++) old.push({ subject: "power.v1.node-a", msgId: `node-a:power:${i}`, data: encode({ i }) });
  await old.close();
  const nc = await connect({ servers: nats.url, user: b.id, pass: b.password, inboxPrefix: nodeInboxPrefix(b.id) });
  t.teardown(() => nc.close());
  const pub = createOutbox(nc, { dir, publishTimeoutMs: 1000, ownsSubject: (s) => subjectId(s) === b.id });
  for (let i = 0; i < 5; i++) pub.publish("power.v1.node-b", { msgId: `node-b:power:${i}` });
  t.true(await pub.flush(8000), "node-b's own windows are published");
  const s = pub.stats();
  await pub.close();
  t.is(s.published, 5);
  t.is(s.dropped, 3);
  const info = await (await jetstreamManager(operator)).streams.info("POWER", { subjects_filter: ">" });
  t.deepEqual(info.state.subjects, { "power.v1.node-b": 5 });
});

/** A nats-server with the generated authorization: the load generator's two users and the operator, LOAD and POWER created. */
async function loadgenNats(t: import("ava").ExecutionContext) {
  const worker = { user: loadgenUser("worker"), password: pw() };
  const coordinator = { user: loadgenUser("coordinator"), password: pw() };
  const op = { user: "operator", password: pw() };
  const nats = await startTestNats({ config: natsAuthConfig({ nodes: [], operator: op, loadgen: { worker: { password: worker.password }, coordinator: { password: coordinator.password } } }) });
  t.teardown(() => nats.stop());
  const operator = await connect({ servers: nats.url, user: op.user, pass: op.password });
  t.teardown(() => operator.close());
  // As in production: the analyzer (operator identity) created the streams.
  await ensureStreams(await jetstreamManager(operator), ["POWER", "LOAD"]);
  return { nats, operator, worker, coordinator };
}

test("nats permissions - loadgen-worker and loadgen-coordinator users run a coordinated load through the CLI, every result in LOAD", async (t) => {
  const { nats, operator, worker, coordinator } = await loadgenNats(t);
  const server = await startEchoServer({ tokensPerChunk: 1 << 20 });
  t.teardown(() => server.stop());
  const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));
  const spool = mkdtempSync(join(tmpdir(), "loadgen-perm-"));
  t.teardown(() => rmSync(spool, { recursive: true, force: true }));
  const w = spawn(process.execPath, [bin, "load", "--worker", "--worker-id", "w1", "--nats", nats.url, "--user", worker.user, "--password", worker.password, "--spool-dir", join(spool, "w1")], { stdio: ["ignore", "ignore", "pipe"] });
  t.teardown(() => void w.kill("SIGKILL"));
  let werr = "";
  w.stderr!.on("data", (d) => (werr += d));
  const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [bin, "load", "--workers", "1", "--nats", nats.url, "--user", coordinator.user, "--password", coordinator.password, "--run-id", "perm", "--workload", "short", "--rate", "20", "--duration", "1", "--arrival", "constant", "--target", server.url, "--no-progress"], { timeout: 45_000 }, (e, stdout, stderr) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
  t.log(run.stderr, werr);
  t.is(run.code, 0, run.stderr);
  t.regex(run.stdout, /20 results in LOAD \(0 duplicates dropped\), 0 missing/);
  t.notRegex(werr + run.stderr, /permission/i);
  const info = await (await jetstreamManager(operator)).streams.info("LOAD", { subjects_filter: ">" });
  t.deepEqual(info.state.subjects, { "load.v1.perm": 20 });
});

test("nats permissions - a loadgen user can reach only the load generator's subjects and LOAD: not power.v1.*, not the streams, not the other role's inbox", async (t) => {
  const { nats, operator, worker, coordinator } = await loadgenNats(t);
  const ncW = await connect({ servers: nats.url, user: worker.user, pass: worker.password, inboxPrefix: loadgenInboxPrefix("worker") });
  t.teardown(() => ncW.close());
  const ncC = await connect({ servers: nats.url, user: coordinator.user, pass: coordinator.password, inboxPrefix: loadgenInboxPrefix("coordinator") });
  t.teardown(() => ncC.close());

  // Results to LOAD: yes. Power samples, as any node: no, and nothing is stored.
  t.is((await jetstream(ncW).publish(subjects.load("r1"), encode({ ok: true }), { msgID: "r1.0" })).stream, "LOAD");
  for (const nc of [ncW, ncC]) await t.throwsAsync(jetstream(nc).publish("power.v1.node-a", encode({ spoof: true }), { timeout: 1000 }));
  const jsmOp = await jetstreamManager(operator);
  t.is((await jsmOp.streams.info("POWER")).state.messages, 0);

  // JetStream API: the worker none; the coordinator reads LOAD but cannot delete, purge or create streams.
  const refused = async (nc: NatsConnection, subject: string) => {
    try {
      await nc.request(subject, "{}", { timeout: 800 });
      return false;
    } catch {
      return true;
    }
  };
  for (const s of ["$JS.API.STREAM.INFO.LOAD", "$JS.API.CONSUMER.CREATE.LOAD", "$JS.API.STREAM.DELETE.LOAD"]) t.true(await refused(ncW, s), `worker: ${s}`);
  for (const s of ["$JS.API.STREAM.DELETE.LOAD", "$JS.API.STREAM.PURGE.LOAD", "$JS.API.STREAM.CREATE.EVIL", "$JS.API.STREAM.INFO.POWER", "$JS.API.CONSUMER.CREATE.POWER"]) t.true(await refused(ncC, s), `coordinator: ${s}`);
  t.false(await refused(ncC, "$JS.API.STREAM.INFO.LOAD"));
  t.is((await jsmOp.streams.info("LOAD")).state.messages, 1);

  // Neither role may listen on the other's replies, nor on the nodes' subjects.
  for (const [nc, subject] of [[ncW, `${loadgenInboxPrefix("coordinator")}.>`], [ncC, `${loadgenInboxPrefix("worker")}.>`], [ncW, "_INBOX.>"], [ncW, "ctl.v1.node-a.>"]] as const) {
    const sub = nc.subscribe(subject);
    const closed = await Promise.race([sub.closed, pause(3000).then(() => "still open")]); // the deadline for the server to close it
    t.true(closed instanceof Error && /permission/i.test(closed.message), `${subject}: ${String(closed)}`);
  }
});

test("nats permissions - the governor user reads the live streams and the inventory, sets clocks through clock control and audits; it cannot publish power nor answer clock control", async (t) => {
  const { startSimnode } = await import("../services/simnode/server.ts");
  const { simnodeClockBackend } = await import("../services/agent/clock-control.ts");
  const { startGovernor } = await import("../services/governor/mod.ts");
  const { startAgentOnSim } = await import("./helpers/sim-agent.ts");
  const { GOVERNOR_USER, governorInboxPrefix } = await import("../shared/subjects.ts");
  const gov = { password: pw() };
  const op = { user: "operator", password: pw() };
  const nats = await startTestNats({ config: natsAuthConfig({ nodes: [], operator: op, governor: gov }) });
  t.teardown(() => nats.stop());
  const operator = await connect({ servers: nats.url, user: op.user, pass: op.password });
  t.teardown(() => operator.close());
  await ensureStreams(await jetstreamManager(operator), ["POWER", "WORK", "REQUESTS", "ENERGY", "AUDIT"]);
  const sim = await startSimnode({ gpus: 4, tp: 4, model: "llama-2-70b" });
  t.teardown(() => sim.stop());
  // The agent runs as the operator here: its own identity is another test's subject.
  const agent = await startAgentOnSim(operator, sim, "node-a", { clockBackend: simnodeClockBackend(sim.url), publishIntervalMs: 200 });
  t.teardown(() => agent.stop());
  const audits: { kind: string; action: string; by?: string }[] = [];
  operator.subscribe("audit.v1.node-a", { callback: (_e, m) => void audits.push(decode(m.data) as (typeof audits)[number]) });

  const nc = await connect({ servers: nats.url, user: GOVERNOR_USER, pass: gov.password, inboxPrefix: governorInboxPrefix() });
  t.teardown(() => nc.close());
  const errs = permissionErrors(nc);
  const g = await startGovernor({
    nc, id: "gov-perm", periodMs: 60_000, leaseMs: 120_000, dryRun: false, slo: { ttftSloMs: 3000, tpotSloMs: 300, attainmentTarget: 0.9 }, policy: { minSamples: 1, stablePeriods: 1 },
    fallbackClocksMhz: Array.from({ length: 110 }, (_, i) => 1980 - 15 * i), nodes: ["node-a"],
  });
  t.teardown(() => g.stop());
  const tap = Object.values(agent.tapUrls)[0]!;
  const send = async () => (await fetch(`${tap}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: [1, 2, 3], max_tokens: 4, ignore_eos: true, stream: true }) })).text();
  let decisions: Awaited<ReturnType<typeof g.tick>> = [];
  await until(async () => {
    await Promise.all([send(), send(), send()]);
    await pause(300);
    decisions = await g.tick();
    return decisions.some((d) => d.applied && d.action === "down");
  }, 20_000, "a step down applied through clock control");
  await until(() => audits.some((a) => a.kind === "governor") && audits.some((a) => a.action === "set" && a.by === "gov-perm"), 5000, "the decision and clock control's set on audit.v1.node-a");
  t.true(sim.node.knobs().smClockMhz < 1980, "the clock went down");
  await g.stop();
  t.is(sim.node.knobs().smClockMhz, 1980, "given back");
  t.deepEqual(errs.filter((e) => /permission/i.test(e)), [], "nothing it needs was refused");

  // What it may not do: publish a node's power, or answer a node's clock control.
  await t.throwsAsync(jetstream(nc).publish("power.v1.node-a", encode({ spoof: true }), { timeout: 1500 }));
  const sub = nc.subscribe("ctl.v1.node-a.>");
  const closed = await Promise.race([sub.closed, pause(3000).then(() => "still open")]);
  t.true(closed instanceof Error && /permission/i.test(closed.message), String(closed));
});
