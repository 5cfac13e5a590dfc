import test from "ava";
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { startAnalyzer } from "../services/analyzer/analyzer.ts";
import { createInfluxSink } from "../services/analyzer/influx-sink.ts";
import { poissonWorkload, runLoad } from "../services/loadgen/mod.ts";
import { startSimnode } from "../services/simnode/server.ts";
import { startAgentOnSim } from "./helpers/sim-agent.ts";
import { influxQuery, type InfluxTarget } from "../shared/mod.ts";
import { withStack } from "./helpers/stack.ts";
import { pause, until } from "./helpers/until.ts";

/**
 * Restart safety, against recorded streams: the streams of a real run (simnode → agent) are
 * analysed once without interruption, then again with the analyzer killed (-9) mid-run and
 * restarted, then again with InfluxDB frozen mid-run. All three must store the same results.
 */
const FREEZE_S = Number(process.env.JOULESTREAM_INFLUX_OUTAGE_S ?? 30);
const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));

interface Results {
  requests: Map<string, number>;
  measuredJ: number;
  windows: number;
}

async function results(influx: InfluxTarget): Promise<Results> {
  const r = await influxQuery(influx, "SELECT request_id, energy_j FROM request_energy");
  const n = await influxQuery(influx, "SELECT SUM(measured_j) AS m, COUNT(measured_j) AS c FROM node_energy");
  return {
    requests: new Map((r[0]?.rows ?? []).map((x) => [String(x.request_id), Number(x.energy_j)])),
    measuredJ: Number(n[0]?.rows[0]?.m ?? 0),
    windows: Number(n[0]?.rows[0]?.c ?? 0),
  };
}

function assertSame(t: import("ava").ExecutionContext, got: Results, want: Results, what: string) {
  t.is(got.windows, want.windows, `${what}: windows`);
  t.true(Math.abs(got.measuredJ - want.measuredJ) <= 1e-9 * want.measuredJ, `${what}: measured ${got.measuredJ} vs ${want.measuredJ}`);
  t.is(got.requests.size, want.requests.size, `${what}: requests`);
  for (const [id, e] of want.requests) {
    const g = got.requests.get(id);
    t.true(g !== undefined && Math.abs(g - e) <= 1e-9 * Math.max(1, e), `${what}: request ${id} ${g} vs ${e}`);
  }
}

async function pendingOf(url: string, name: string): Promise<number> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    let n = 0;
    for (const s of ["POWER", "WORK", "REQUESTS"]) {
      try {
        const ci = await jsm.consumers.info(s, `${name}-${s.toLowerCase()}`);
        n += ci.num_pending + ci.num_ack_pending;
      } catch {
        n += 1; // not created yet
      }
    }
    return n;
  } finally {
    await nc.close();
  }
}

test("analyzer - kill -9 mid-run and InfluxDB frozen mid-run both store exactly what an uninterrupted run stores", async (t) => {
  t.timeout((FREEZE_S + 150) * 1000);
  const stack = await withStack(t);
  const target = (db: string): InfluxTarget => ({ url: stack.influxUrl, database: db });
  for (const db of ["ref", "crash", "frozen"]) await influxQuery(target(db), `CREATE DATABASE "${db}"`);
  const nc = await connect({ servers: stack.natsUrl });
  t.teardown(() => nc.close());

  // Two analyzers run while a real node is under load: one is killed (-9) and restarted, the
  // other's InfluxDB freezes (SIGSTOP: connections hang, nothing answers) for FREEZE_S seconds.
  const run = () =>
    spawn(process.execPath, [bin, "analyzer", "--nats", stack.natsUrl, "--influx-url", stack.influxUrl, "--influx-db", "crash", "--influx-api", "v1", "--name", "crash"], { stdio: "ignore" });
  let child: ChildProcess = run();
  t.teardown(() => void child.kill("SIGKILL"));
  const clientLog: string[] = [];
  const frozen = await startAnalyzer({ nc, name: "frozen", sink: createInfluxSink({ ...target("frozen"), api: "v1", timeoutMs: 2000 }), tickMs: 50, log: (l) => clientLog.push(l) });

  const sim = await startSimnode({ gpus: 4, tp: 2, model: "llama-3-8b", seed: 5 });
  t.teardown(() => sim.stop());
  const agent = await startAgentOnSim(nc, sim, "rec");
  const loading = runLoad({ source: poissonWorkload({ rate: 6, durationS: 8, cls: "short-medium", seed: 2 }), targets: Object.values(agent.tapUrls), runId: "rec" });

  await until(async () => (await results(target("crash"))).windows >= 2, 30_000, "first results of the doomed analyzer");
  child.kill("SIGKILL");
  await new Promise((r) => child.once("exit", r));
  child = run();
  await until(async () => (await results(target("frozen"))).windows >= 3, 30_000, "first results before the freeze");
  const stoppedAt = (await results(target("frozen"))).windows;
  process.kill(stack.pids.influxd, "SIGSTOP");
  try {
    // The outage's length is the point: the frozen analyzer must ride out FREEZE_S s of hanging writes.
    await pause(FREEZE_S * 1000);
  } finally {
    process.kill(stack.pids.influxd, "SIGCONT");
  }
  const load = await loading;
  await agent.stop();
  t.true(load.ok >= 20, `only ${load.ok} requests`);

  t.true(await frozen.idle(90_000));
  await frozen.stop();
  t.true(frozen.stats().sinkRetries > 0, "the freeze was felt");
  t.true(clientLog.some((l) => l.startsWith("writing InfluxDB failed, retrying")), "the retries are said in the analyzer's log");
  await until(async () => (await pendingOf(stack.natsUrl, "crash")) === 0, 60_000, "the restarted analyzer to catch up");
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));

  // The reference: one uninterrupted analyzer over the same recorded streams.
  const ref = await startAnalyzer({ nc, name: "ref", sink: createInfluxSink({ ...target("ref"), api: "v1" }) });
  t.true(await ref.idle(60_000));
  await ref.stop();
  const want = await results(target("ref"));
  t.is(want.requests.size, load.ok);
  t.true(want.windows > stoppedAt, "the freeze came mid-run");
  assertSame(t, await results(target("crash")), want, "after kill -9");
  assertSame(t, await results(target("frozen")), want, "after the InfluxDB freeze");
});
