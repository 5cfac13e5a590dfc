import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { createDatabase } from "../infra/influx-node.ts";
import { createDcgmSource, startAgent, type Agent } from "../services/agent/mod.ts";
import { createInfluxSink, startAnalyzer } from "../services/analyzer/mod.ts";
import { openResultsOutbox } from "../services/loadgen/mod.ts";
import { poissonWorkload, runLoad } from "../services/loadgen/mod.ts";
import { instanceEndpoints, startSimnode, type Simnode } from "../services/simnode/mod.ts";
import { connectNats, errorMessage, stopAll, systemClock } from "../shared/mod.ts";
import { spawnAnalyzer, type AnalyzerProcess } from "./analyzer-process.ts";
import { startFaultCluster, type FaultCluster } from "./cluster.ts";
import type { Scale, Scenario } from "./scenarios.ts";
import { readStored, verdict, type Observation, type Row } from "./verdict.ts";

/**
 * One scenario, start to end, on its own fresh servers: a 3-node cluster and influxd; a simulated
 * node (simnode) with an agent in front, connected to one server (n1); the analyzer under test as
 * `joulestream analyzer` child process(es) writing database "faulted"; a Poisson load (fixed seed)
 * through the agent's taps, its results published to LOAD through the load generator's outbox.
 * The fault comes `faultAtS` into the load. After the load, the agent and the analyzer drain; then
 * an unfaulted analyzer (fresh durable name, database "reference") analyses the very same
 * recorded streams, and the two are compared (verdict.ts).
 */
export interface ScenarioResult {
  scenario: string;
  fault: string;
  rows: Row[];
  wallS: number;
  /** From the agent's stop (every message in JetStream) to the analyzer under test having processed and acknowledged all. */
  catchUpS: number;
}

const ANALYZER = "fa";
const REPLICAS = 3;

export async function runScenario(sc: Scenario, scale: Scale, log: (line: string) => void): Promise<ScenarioResult> {
  const t0 = Date.now();
  const mark = (what: string) => log(`${sc.name}: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const node = `sim-${sc.name}`;
  const runId = `faults-${sc.name}`;
  const cluster: FaultCluster = await startFaultCluster(log);
  const stops: (() => Promise<void>)[] = [() => cluster.stop()];
  const later = (f: () => Promise<void>) => stops.unshift(f);
  try {
    await createDatabase(cluster.influxUrl, "faulted");
    await createDatabase(cluster.influxUrl, "reference");
    const nc = await connectNats({ nats: cluster.natsUrl }, "joulestream-faults-harness");
    later(() => nc.close());
    const jsm = await jetstreamManager(nc);

    const analyzers: AnalyzerProcess[] = [];
    for (let i = 0; i < (sc.analyzers ?? 1); i++) {
      const a = spawnAnalyzer({ label: `a${i + 1}`, natsUrl: cluster.natsUrl, influxUrl: cluster.influxUrl, database: "faulted", name: ANALYZER, onLine: (l) => log(`a${i + 1} ${((Date.now() - t0) / 1000).toFixed(1)} s: ${l}`) });
      analyzers.push(a);
      later(async () => void (a.running() && (await a.kill9())));
      // One at a time: the first creates the streams and buckets, and holds partition 0.
      if (!(await a.waitFor(/consuming from/, 60_000))) throw new Error(`analyzer ${a.label} did not start: ${a.lines().slice(-5).join(" | ")}`);
    }

    mark("analyzers started");
    const sim: Simnode = await startSimnode({ gpus: 2, tp: 1, model: "llama-3-8b", seed: 5 });
    later(() => sim.stop());
    // The agent connects to n1 only; it learns the others from the cluster and fails over to them.
    const agentNc = await connectNats({ nats: cluster.servers[0]!.url }, `joulestream-agent-${node}`);
    later(() => agentNc.close());
    const clock = systemClock();
    const agent: Agent = await startAgent({ nc: agentNc, node, clock, source: createDcgmSource({ url: sim.metricsUrl, clock, kind: "sim" }), instances: instanceEndpoints(sim), log });
    later(() => agent.stop());

    const loadNc = await connectNats({ nats: cluster.natsUrl }, `joulestream-load-${runId}`);
    later(() => loadNc.close());
    const outbox = openResultsOutbox(loadNc);
    const produced: string[] = [];
    const durationS = scale.faultAtS + sc.durationS(scale) + scale.tailS;
    log(`${sc.name}: load ${scale.ratePerS}/s for ${durationS} s, fault at ${scale.faultAtS} s`);
    const loading = runLoad({
      source: poissonWorkload({ rate: scale.ratePerS, durationS, cls: "short-medium", seed: 2 }),
      targets: Object.values(agent.tapUrls),
      runId,
      onResult: (r) => {
        produced.push(r.requestId);
        outbox.publish(r);
      },
    });
    await new Promise((r) => setTimeout(r, scale.faultAtS * 1000));
    const fault = await sc.inject({ cluster, jsm, nc, agentNc, analyzers, analyzerName: ANALYZER, node, runId, scale, log });
    log(`${sc.name}: ${fault}`);
    await loading;

    mark("load done");
    await outbox.drain(120_000);
    const { held } = await outbox.close();
    const loadUnpublished = held + outbox.stats().dropped;
    // A few more windows after the last request, then the agent closes its last window and flushes.
    await new Promise((r) => setTimeout(r, 2000));
    await agent.stop();
    const ps = agent.stats().publisher;
    const agentUnpublished = ps.queued + ps.dropped;

    mark("agent stopped");
    const stoppedAt = Date.now();
    const idle = await untilDrained(jsm, ANALYZER, drainTimeoutMs(scale), () => analyzers.some((a) => a.running()), (line) => log(`${sc.name}: ${line}`));
    const catchUpS = (Date.now() - stoppedAt) / 1000;
    const runningAtEnd = analyzers.some((a) => a.running());
    const deadLettered = sc.hostile ? (await jsm.streams.info("DEADLETTER")).state.messages : 0;
    for (const a of analyzers) if (a.running()) await a.stop();

    mark("analyzer under test drained and stopped");
    // The reference: an unfaulted analyzer over the same recorded streams.
    const refSink = createInfluxSink({ url: cluster.influxUrl, database: "reference", api: "v1" });
    const ref = await startAnalyzer({ nc, name: "reference", sink: refSink });
    const refIdle = await ref.idle(180_000);
    await ref.stop();
    if (!refIdle) log(`${sc.name}: the reference analyzer did not drain within 180 s`);

    mark("reference done");
    const obs: Observation = {
      loadResults: produced,
      faulted: await readStored({ url: cluster.influxUrl, database: "faulted" }),
      reference: await readStored({ url: cluster.influxUrl, database: "reference" }),
      unpublished: { agent: agentUnpublished, load: loadUnpublished },
      crashes: [...cluster.crashes(), ...analyzers.flatMap((a) => a.crash() ?? [])],
      streams: await streamReplicas(jsm),
      expectedReplicas: REPLICAS,
      ...(sc.hostile ? { deadLetters: { sent: sc.hostile(scale), deadLettered } } : {}),
    };
    const rows = verdict(obs);
    if (!idle) rows.push({ check: "analyzer drained", expected: "yes", observed: `no (${runningAtEnd ? `${drainTimeoutMs(scale) / 1000} s` : "no analyzer running"})`, ok: false });
    return { scenario: sc.name, fault, rows, wallS: (Date.now() - t0) / 1000, catchUpS };
  } finally {
    await stopAll(stops).catch((err) => log(`${sc.name}: teardown: ${errorMessage(err)}`));
  }
}

/**
 * How long the analyzer under test gets to catch up after the agent's last message: it does in
 * 1–6 s in every scenario; short runs inside a test with a 150-s timeout must fail with a verdict.
 */
const drainTimeoutMs = (scale: Scale) => (scale.name === "short" ? 60_000 : 180_000);

/**
 * Every message of the analyzer's consumers processed and acknowledged, twice in a row 500 ms apart.
 * Gives up early when no analyzer runs any more (one that exited cannot drain), and says every 10 s
 * what is still pending, so a scenario that fails here says why instead of only timing out.
 */
async function untilDrained(jsm: JetStreamManager, name: string, timeoutMs: number, alive: () => boolean, log: (line: string) => void): Promise<boolean> {
  const t0 = Date.now();
  let quiet = 0;
  let said = t0;
  while (Date.now() < t0 + timeoutMs) {
    if (!alive()) {
      log("no analyzer is running: the analyzer under test cannot drain");
      return false;
    }
    const pending: string[] = [];
    for (const s of ["POWER", "WORK", "REQUESTS", "LOAD"]) {
      try {
        const ci = await jsm.consumers.info(s, `${name}-${s.toLowerCase()}`);
        if (ci.num_pending + ci.num_ack_pending > 0) pending.push(`${s} ${ci.num_pending} unread, ${ci.num_ack_pending} unacknowledged`);
      } catch (err) {
        pending.push(`${s}: ${errorMessage(err)}`); // not there (yet), or no answer during a leader election
      }
    }
    quiet = pending.length === 0 ? quiet + 1 : 0;
    if (quiet >= 2) return true;
    if (Date.now() - said >= 10_000) {
      said = Date.now();
      log(`still draining after ${((said - t0) / 1000).toFixed(0)} s: ${pending.join("; ") || "quiet once"}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  log(`the analyzer under test did not drain within ${timeoutMs / 1000} s`);
  return false;
}

async function streamReplicas(jsm: JetStreamManager): Promise<{ name: string; replicas: number }[]> {
  const out: { name: string; replicas: number }[] = [];
  for await (const si of jsm.streams.list()) out.push({ name: si.config.name, replicas: si.config.num_replicas });
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

