import test from "ava";
import { randomBytes } from "node:crypto";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { natsAuthConfig } from "../infra/nats/auth.ts";
import { nodeInboxPrefix } from "../shared/subjects.ts";
import { ensureStreams, encode } from "../shared/mod.ts";
import { startTestNats } from "./helpers/nats-server.ts";

const pw = () => randomBytes(12).toString("hex");

/** Resolves with the permission error the server sent for this connection, or undefined. */
function permissionErrors(nc: NatsConnection): string[] {
  const errs: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === "error") errs.push(String((s as { error?: Error }).error?.message ?? s.type));
  })();
  return errs;
}

test("permissions - node A cannot publish as node B or lock node B's clocks; the operator can", async (t) => {
  const a = { id: "node-a", password: pw() };
  const b = { id: "node-b", password: pw() };
  const op = { user: "operator", password: pw() };
  const nats = await startTestNats({ config: natsAuthConfig({ nodes: [a, b], operator: op }) });
  t.teardown(() => nats.stop());
  const operator = await connect({ servers: nats.url, user: op.user, pass: op.password });
  t.teardown(() => operator.close());
  await ensureStreams(await jetstreamManager(operator), ["POWER", "REQUESTS", "WORK", "AUDIT"]);

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
  const closed = await Promise.race([sub.closed, new Promise((r) => setTimeout(() => r("still open"), 3000))]);
  t.true(closed instanceof Error && /permission/i.test(closed.message), String(closed));
  t.true(errsA.some((e) => /permission/i.test(e)), errsA.join("; "));

  // The operator can reach node B's control subject.
  const reply = await operator.request("ctl.v1.node-b.set", "{}", { timeout: 1000 });
  t.is(new TextDecoder().decode(reply.data), "ok");
});
