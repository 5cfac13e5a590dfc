import test, { type ExecutionContext } from "ava";
import { spawn } from "node:child_process";
import { createServer, connect as tcpConnect, type Socket } from "node:net";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { simnodeClockBackend } from "../services/agent/clock-control.ts";
import { startSimnode, type Simnode } from "../services/simnode/server.ts";
import { startGovernor, type GovernorOptions } from "../services/governor/mod.ts";
import { decode, ensureStreams, subjects, type GovernorDecision } from "../shared/mod.ts";
import { jetstreamManager } from "@nats-io/jetstream";
import { startTestNats } from "./helpers/nats-server.ts";
import { startAgentOnSim } from "./helpers/sim-agent.ts";
import { pause, until } from "./helpers/until.ts";

/**
 * The governor against real pieces: nats-server, a simulated node (one TP4 instance on 4 GPUs, so
 * the simnode's one node-wide clock is the instance's), an agent with clock control in front of it,
 * and live traffic through the agent's tap. The clock is read from the simnode itself.
 */
const MAX = 1980;
const SLO = { ttftSloMs: 3000, tpotSloMs: 300, attainmentTarget: 0.9 };
const POLICY = { minSamples: 3, stablePeriods: 1, floorMhz: 1005 };

interface Rig {
  nats: Awaited<ReturnType<typeof startTestNats>>;
  nc: NatsConnection;
  sim: Simnode;
  tap: string;
  clock(): number;
  decisions: GovernorDecision[];
  clockAudits: { action: string; by?: string }[];
  traffic(opts?: { concurrency?: number; outputTokens?: number }): { stop(): Promise<void> };
}

async function rig(t: ExecutionContext, simOpts: { maxBatch?: number } = {}): Promise<Rig> {
  const nats = await startTestNats();
  const nc = await connect({ servers: nats.url });
  await ensureStreams(await jetstreamManager(nc));
  const sim = await startSimnode({ model: "llama-2-70b", gpus: 4, tp: 4, ...simOpts });
  const agent = await startAgentOnSim(nc, sim, "n1", { clockBackend: simnodeClockBackend(sim.url), publishIntervalMs: 200 });
  const decisions: GovernorDecision[] = [];
  const clockAudits: { action: string; by?: string }[] = [];
  nc.subscribe(subjects.audit("n1"), {
    callback: (_e, m) => {
      const v = decode(m.data) as { kind: string; action: string; by?: string };
      if (v.kind === "governor") decisions.push(v as unknown as GovernorDecision);
      else clockAudits.push(v);
    },
  });
  const loops: { stop(): Promise<void> }[] = [];
  t.teardown(async () => {
    for (const l of loops) await l.stop();
    await agent.stop();
    await sim.stop();
    await nc.close();
    await nats.stop();
  });
  const tap = Object.values(agent.tapUrls)[0]!;
  const traffic = (o: { concurrency?: number; outputTokens?: number } = {}) => {
    let on = true;
    const abort = new AbortController();
    const one = async () => {
      while (on) {
        try {
          const res = await fetch(`${tap}/v1/completions`, { signal: abort.signal, method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: Array.from({ length: 200 }, () => 7), max_tokens: o.outputTokens ?? 16, ignore_eos: true, stream: true }) });
          await res.text();
        } catch {
          await pause(50); // the tap is closing at teardown: do not spin
        }
      }
    };
    const workers = Array.from({ length: o.concurrency ?? 1 }, one);
    const loop = { stop: async () => void ((on = false), abort.abort(), await Promise.all(workers)) };
    loops.push(loop);
    return loop;
  };
  return { nats, nc, sim, tap, clock: () => sim.node.knobs().smClockMhz, decisions, clockAudits, traffic };
}

/** The control period's policy alone unless a test asks for the burst guard (its own tests below). */
const govOpts = (r: Rig, nc: NatsConnection, extra: Partial<GovernorOptions> = {}): GovernorOptions => ({
  nc, id: "gov-A", periodMs: 700, leaseMs: 2000, dryRun: false, slo: SLO, policy: POLICY, fallbackClocksMhz: Array.from({ length: 110 }, (_, i) => MAX - 15 * i), burstGuard: false, ...extra,
});

test("governor live - dry run decides and publishes, and changes no clock", async (t) => {
  const r = await rig(t);
  r.traffic({ concurrency: 2 });
  const gov = await startGovernor(govOpts(r, r.nc, { dryRun: true }));
  t.teardown(() => gov.stop());
  await until(() => r.decisions.filter((d) => d.action === "down").length >= 2, 20_000, "two would-be steps down");
  t.log(r.decisions.map((d) => `${d.action} ${d.fromMhz}→${d.toMhz}: ${d.reason}`).slice(0, 6).join("\n"));
  t.is(r.clock(), MAX, "the simulated GPUs still run at the maximum clock");
  t.deepEqual(r.clockAudits.filter((a) => a.action === "set"), [], "clock control never received a set");
  t.true(r.decisions.every((d) => d.dryRun && !d.applied && d.notApplied === "dry run"));
  await gov.stop();
  t.is(r.clock(), MAX);
});

test("governor live - lowers the clock under light load, and its stop gives the clock back", async (t) => {
  const r = await rig(t);
  r.traffic({ concurrency: 2 });
  const gov = await startGovernor(govOpts(r, r.nc));
  await until(() => r.clock() < MAX && r.decisions.some((d) => d.applied && d.action === "down"), 20_000, "the governor to lower the clock");
  const applied = r.decisions.find((d) => d.applied && d.action === "down")!;
  t.log(`${applied.fromMhz}→${applied.toMhz}: ${applied.reason}`);
  t.true(r.clockAudits.some((a) => a.action === "set" && a.by === "gov-A"), "the change went through clock control, under the governor's name");
  await gov.stop();
  t.is(r.clock(), MAX, "restored when stop() resolved");
});

test("governor live - an SLO breach (the queue grows) returns the clock to the maximum within one control period", async (t) => {
  const r = await rig(t, { maxBatch: 4 });
  r.traffic({ concurrency: 1 });
  const gov = await startGovernor(govOpts(r, r.nc, { periodMs: 1000, leaseMs: 3000 }));
  t.teardown(() => gov.stop());
  await until(() => r.clock() < MAX, 20_000, "the governor to lower the clock");
  const before = r.decisions.length;
  const t0 = Date.now();
  r.traffic({ concurrency: 40, outputTokens: 200 }); // 40 long requests on a max batch of 4: a queue
  await until(() => r.clock() === MAX, 5000, "the clock back at the maximum");
  const took = Date.now() - t0;
  // The decision is published once clock control has answered: wait for it too.
  await until(() => r.decisions.slice(before).some((d) => d.action === "max"), 5000, "the decision to return to the maximum");
  const after = r.decisions.slice(before);
  t.log(`back at ${MAX} MHz after ${took} ms; decisions since the burst:\n${after.map((d) => `${d.action} ${d.fromMhz}→${d.toMhz} inFlight=${d.inFlight}: ${d.reason}`).join("\n")}`);
  // The first decision taken on a period that saw the queue is the return to the maximum.
  const firstSeen = after.findIndex((d) => (d.inFlight ?? 0) > 8);
  t.true(firstSeen >= 0, "a period saw the queue");
  t.is(after[firstSeen]!.action, "max");
  t.regex(after[firstSeen]!.reason, /queue (grew|surged)/);
  // One period to see it, plus the WORK window (200 ms) and the set's round trip.
  t.true(took <= 1000 + 200 + 1000, `took ${took} ms`);
});

test("governor live - the burst guard: requests waiting for their first token take the clock to the maximum at once, and it comes back down when none waits", async (t) => {
  const r = await rig(t, { maxBatch: 4 });
  // A long period: what happens between two ticks is the guard's. Patience stays 0 (maxPatience 0): any waiting request boosts.
  // With the guard, a period with no requests does not hold the clock up: the first period lowers it.
  const gov = await startGovernor(govOpts(r, r.nc, { periodMs: 4000, leaseMs: 12_000, burstGuard: { maxPatience: 0 }, policy: { ...POLICY, maxStepDownMhz: 1000 } }));
  t.teardown(() => gov.stop());
  await until(() => r.clock() < MAX && r.decisions.some((d) => !d.guard && d.applied && d.action === "down"), 30_000, "the period's policy to lower the clock");
  const before = r.decisions.length;
  const t0 = Date.now();
  const burst = r.traffic({ concurrency: 16, outputTokens: 100 }); // 16 on a max batch of 4: requests wait for their first token
  await until(() => r.clock() === MAX, 3000, "the guard to boost");
  const took = Date.now() - t0;
  await until(() => r.decisions.slice(before).some((d) => d.guard && d.action === "max" && d.applied), 3000, "the guard's decision");
  const boost = r.decisions.slice(before).find((d) => d.guard && d.action === "max")!;
  t.log(`at ${MAX} MHz ${took} ms after the burst began (period 4000 ms): ${boost.reason}`);
  t.true(took < 2000, `the guard answered within half a period (${took} ms)`);
  t.true((boost.waiting ?? 0) > 0);
  t.true(gov.stats().boosts >= 1);
  await burst.stop();
  await until(() => r.clock() < MAX, 15_000, "the clock back down once no request waits");
  const back = r.decisions.slice(before).find((d) => d.guard && d.action === "down");
  t.truthy(back, "the guard's return is a decision too");
  t.regex(back!.reason, /no request waiting/);
  t.true(r.clockAudits.filter((a) => a.action === "set" && a.by === "gov-A").length >= 3, "through clock control, under the governor's lease");
});

test("governor live - the burst guard in a dry run decides, publishes and changes no clock", async (t) => {
  const r = await rig(t, { maxBatch: 4 });
  const gov = await startGovernor(govOpts(r, r.nc, { dryRun: true, periodMs: 500, burstGuard: { maxPatience: 0 }, policy: { ...POLICY, maxStepDownMhz: 1000 } }));
  t.teardown(() => gov.stop());
  await until(() => r.decisions.some((d) => d.action === "down"), 10_000, "a would-be step down (no traffic yet)");
  r.traffic({ concurrency: 8, outputTokens: 50 }); // 8 on a max batch of 4: some always wait for their first token
  await until(() => r.decisions.some((d) => d.guard && d.action === "max"), 20_000, "a would-be boost").catch((err) => {
    t.log(r.decisions.map((d) => `${d.action} ${d.fromMhz}→${d.toMhz} ${d.reason}`).join("\n"));
    throw err;
  });
  t.is(r.clock(), MAX);
  t.deepEqual(r.clockAudits.filter((a) => a.action === "set"), [], "clock control never received a set");
  t.true(r.decisions.every((d) => d.dryRun && !d.applied && d.notApplied === "dry run"));
});

test("governor live - two governors on one instance: one holds it, the other is refused, and takes over when the first stops", async (t) => {
  const r = await rig(t);
  r.traffic({ concurrency: 2 });
  const a = await startGovernor(govOpts(r, r.nc, { id: "gov-A" }));
  await until(() => r.clock() < MAX, 20_000, "gov-A to lower the clock");
  const b = await startGovernor(govOpts(r, r.nc, { id: "gov-B" }));
  t.teardown(() => b.stop());
  await until(() => r.decisions.some((d) => d.governor === "gov-B" && d.notApplied !== undefined && /held by gov-A/.test(d.notApplied)), 10_000, "gov-B to be refused");
  const holders = JSON.parse(new TextDecoder().decode((await r.nc.request(`${subjects.control("n1")}.get`, "{}", { timeout: 3000 })).data)) as { leaseHolders: string[] };
  t.deepEqual(holders.leaseHolders, ["gov-A"]);
  t.is(b.stats().sets, 0, "gov-B changed nothing while gov-A held the instance");
  await a.stop();
  await until(() => r.clockAudits.some((c) => c.action === "set" && c.by === "gov-B"), 10_000, "gov-B to take over");
  t.pass();
});

test("governor live - killed with SIGKILL, its clocks are restored by the agent's lease", async (t) => {
  const r = await rig(t);
  r.traffic({ concurrency: 2 });
  const child = spawn(process.execPath, ["--import=tsx", "services/cli/main.ts", "govern", "--nats", r.nats.url, "--id", "gov-K", "--period-ms", "500", "--lease-ms", "1500", "--ttft-slo-ms", "3000", "--tpot-slo-ms", "300", "--attainment", "0.9", "--min-samples", "3"], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  t.teardown(() => void child.kill("SIGKILL"));
  await until(() => r.clock() < MAX, 30_000, `the governor process to lower the clock (stderr: ${err})`);
  child.kill("SIGKILL");
  const t0 = Date.now();
  await until(() => r.clock() === MAX, 5000, "the lease to run out and restore the clock");
  t.log(`restored ${Date.now() - t0} ms after SIGKILL (lease 1500 ms)`);
  // The agent publishes its restore once the clock is back: wait for it.
  await until(() => r.clockAudits.some((a) => a.action === "restore" && /lease of gov-K expired/.test(JSON.stringify(a))), 3000, `the agent's restore in the audit trail (${JSON.stringify(r.clockAudits.slice(-3))})`);
  t.pass();
});

test("governor live - a governor that loses its NATS connection has its clocks restored by the lease (burst guard on)", async (t) => {
  const r = await rig(t);
  r.traffic({ concurrency: 2 });
  // The governor reaches NATS through a proxy the test can cut.
  const sockets = new Set<Socket>();
  const proxy = createServer((c) => {
    const up = tcpConnect(r.nats.port, "127.0.0.1");
    for (const s of [c, up]) {
      sockets.add(s);
      s.on("error", () => s.destroy());
      s.on("close", () => sockets.delete(s));
    }
    c.pipe(up).pipe(c);
  });
  await new Promise<void>((res) => proxy.listen(0, "127.0.0.1", res));
  const port = (proxy.address() as { port: number }).port;
  const gnc = await connect({ servers: `nats://127.0.0.1:${port}`, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
  const gov = await startGovernor(govOpts(r, gnc, { id: "gov-L", burstGuard: {} }));
  t.teardown(async () => {
    // Closed first: the governor's give-back then fails at once (the lease already restored the clock).
    await gnc.close().catch(() => undefined);
    await gov.stop().catch(() => undefined);
  });
  await until(() => r.clock() < MAX, 20_000, "the governor to lower the clock");
  proxy.close();
  for (const s of sockets) s.destroy();
  const t0 = Date.now();
  await until(() => r.clock() === MAX, 5000, "the lease to run out and restore the clock");
  t.log(`restored ${Date.now() - t0} ms after the connection was cut (lease 2000 ms)`);
  await until(() => r.clockAudits.some((a) => a.action === "restore" && /lease of gov-L expired/.test(JSON.stringify(a))), 3000, "the agent's restore in the audit trail");
  t.pass();
});

test("governor live - the kill switch gives the clocks back at once and the governor stops acting, its burst guard too", async (t) => {
  const r = await rig(t);
  r.traffic({ concurrency: 2 });
  const gov = await startGovernor(govOpts(r, r.nc, { id: "gov-S", burstGuard: { maxPatience: 0 } }));
  t.teardown(() => gov.stop());
  await until(() => r.clock() < MAX, 20_000, "the governor to lower the clock");
  r.nc.publish(subjects.governorKill, "operator says stop");
  await until(() => r.clock() === MAX, 3000, "the clock given back");
  const n = r.decisions.length;
  await until(() => r.decisions.length >= n + 3, 10_000, "three more periods");
  const boosts = gov.stats().boosts;
  r.traffic({ concurrency: 12, outputTokens: 50 }); // requests wait for their first token: a live guard would boost
  await until(() => r.decisions.length >= n + 6, 10_000, "three more periods under the burst");
  t.true(r.decisions.slice(n + 1).every((d) => !d.applied && d.notApplied === "kill switch" && !d.guard), "no decision applied after the kill switch, none from the guard");
  t.is(gov.stats().boosts, boosts, "the guard did not move");
  t.is(r.clock(), MAX);
  t.true(gov.stats().killed);
});
