import test from "ava";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { startSimnode } from "../services/simnode/server.ts";
import { startAgentOnSim } from "./helpers/sim-agent.ts";
import { eventsOf, type PowerBatch, type RequestBatch, type RequestEvent } from "../shared/mod.ts";
import { readStream, startTestNats } from "./helpers/nats-server.ts";
import { pause, until } from "./helpers/until.ts";

/** Outage length: the acceptance figure is 30 s; JOULESTREAM_OUTAGE_S shortens it for quick local runs. */
const OUTAGE_S = Number(process.env.JOULESTREAM_OUTAGE_S ?? 30);

const readAll = async <T>(url: string, stream: string): Promise<T[]> => (await readStream<T>(url, stream)).map((m) => m.value);

test(`agent - NATS down for ${OUTAGE_S} s: every window and request event arrives, in order, none dropped`, async (t) => {
  t.timeout((OUTAGE_S + 60) * 1000);
  const nats = await startTestNats();
  const sim = await startSimnode({ gpus: 2, tp: 2, model: "llama-3-8b", seed: 3 });
  const spool = mkdtempSync(join(tmpdir(), "agent-spool-"));
  const nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  const agent = await startAgentOnSim(nc, sim, "n1", { spoolDir: spool });
  t.teardown(async () => {
    await agent.stop();
    await nc.close();
    await sim.stop();
    await nats.stop();
    rmSync(spool, { recursive: true, force: true });
  });
  const tap = Object.values(agent.tapUrls)[0]!;
  let sent = 0;
  let done = 0;
  let failed = 0;
  const send = async () => {
    const res = await fetch(`${tap}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": `r${sent++}` },
      body: JSON.stringify({ model: "llama-3-8b", prompt: Array.from({ length: 64 }, (_, i) => i), max_tokens: 8, ignore_eos: true, stream: true }),
    });
    await res.text();
    if (!res.ok) failed++;
    done++;
  };
  // Requests keep flowing through the tap the whole time: it must never wait on NATS.
  let running = true;
  const load = (async () => {
    while (running) {
      const t0 = performance.now();
      await send();
      const took = performance.now() - t0;
      if (took > 2000) failed++; // the proxy path blocked
      await pause(200); // a steady trickle of requests, not a flood
    }
  })();
  // Flowing before the outage: windows and requests published.
  await until(() => agent.stats().sampler.windows >= 2 && agent.stats().publisher.published > 0 && done > 0, 10_000, "windows and requests published before the outage");
  await nats.stop();
  await pause(OUTAGE_S * 1000); // the outage must last OUTAGE_S
  t.true(agent.stats().publisher.queued > 0, "samples queued during the outage");
  await nats.start();
  // The backlog drains on its own (not by stop()'s flush), and a window closes with NATS back.
  const windowsAtRestart = agent.stats().sampler.windows;
  await until(() => agent.stats().publisher.queued === 0 && agent.stats().sampler.windows > windowsAtRestart, 30_000, "the backlog drained after the restart");
  running = false;
  await load;
  await agent.stop();
  const st = agent.stats();
  t.is(st.publisher.dropped, 0);
  t.is(st.publisher.queued, 0);
  t.is(failed, 0);

  const power = await readAll<PowerBatch>(nats.url, "POWER");
  const seqs = power.map((p) => p.seq);
  t.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i), "POWER windows complete and in order");
  t.is(power.length, st.sampler.windows);
  t.true(power.length >= OUTAGE_S + 3);
  const work = await readAll<{ windowStartMs: number; instance: string }>(nats.url, "WORK");
  t.is(work.length, power.length * sim.instances.length);
  const messages = await readAll<RequestBatch | RequestEvent>(nats.url, "REQUESTS");
  const events = messages.flatMap((m) => eventsOf(m) as RequestEvent[]);
  t.true(messages.every((m) => m.kind === "request_batch") && messages.length < events.length / 2, `request events go out in batches (${messages.length} messages, ${events.length} events)`);
  // In the order the tap emitted them: each request's start, first token, end.
  const order = new Map<string, string[]>();
  for (const e of events) order.get(e.requestId)?.push(e.event) ?? order.set(e.requestId, [e.event]);
  t.true([...order.values()].every((seq) => seq.join() === "start,first_token,end"));
  const ends = new Set(events.filter((e) => e.event === "end").map((e) => e.requestId));
  const starts = new Set(events.filter((e) => e.event === "start").map((e) => e.requestId));
  t.is(starts.size, sent);
  t.is(ends.size, sent);
});
