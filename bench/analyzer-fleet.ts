/**
 * How large a fleet one analyzer keeps up with on this machine, with the fleet emulator publishing
 * in real time (nodes × 8 GPUs at 10 Hz, 2 TP=4 instances per node, Poisson requests).
 *
 *   npm run bench -- analyzer-fleet [sizes=10,25,50,100,200] [seconds=20] [rate=2]
 *
 * Per fleet size, on a fresh local stack (nats-server + influxd), the analyzer in a child process:
 *  1. real time for `seconds`: consumer lag (num_pending of the analyzer's durable consumers, every
 *     second), the analyzer's CPU, and the latency from a window's end to its node_energy row being
 *     readable in InfluxDB (polled every 250 ms; add 0.1–1 s for the age of the window's samples);
 *  2. throughput: the backlog the run left, drained once by a do-nothing durable consumer (acks
 *     only) and once by a fresh analyzer (long lateness, empty emitted store): msgs/s, and the ratio;
 *  3. the same real-time run with 2 replicas of one name on 8 node partitions (the NATS server maps
 *     each node's subjects to a partition; the replicas split the partitions through leases).
 * Stops at the first size the single analyzer does not keep up with. Last line: JSON figures.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { jetstream, jetstreamManager, AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { startAnalyzer } from "../services/analyzer/analyzer.ts";
import { createInfluxSink } from "../services/analyzer/influx-sink.ts";
import { detectInfluxApi } from "../services/analyzer/influx-version.ts";
import { partitionMappings } from "../services/analyzer/partitions.ts";
import { startFleet, type FleetReport } from "../services/fleet/emulator.ts";
import { readResults } from "../services/fleet/testing/analyzer-harness.ts";
import { startLocalStack, type LocalStack } from "../infra/local-stack.ts";
import { influxQuery } from "../shared/mod.ts";

const STREAMS = ["POWER", "WORK", "REQUESTS"] as const;

// ---- child: one analyzer replica, driven over stdin/stdout ----------------------------------------
if (process.argv[2] === "--child") {
  const [natsUrl, influxUrl, database, name, latenessMs, partitions] = process.argv.slice(3) as [string, string, string, string, string, string];
  const startedAtMs = Date.now();
  const nc = await connect({ servers: natsUrl });
  const { api } = await detectInfluxApi(influxUrl);
  const analyzer = await startAnalyzer({ nc, sink: createInfluxSink({ url: influxUrl, database, api }), name, allowedLatenessMs: Number(latenessMs), partitions: Number(partitions ?? 0) });
  const cpu0 = process.cpuUsage();
  console.log(JSON.stringify({ ready: true, startedAtMs }));
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === "stats") console.log(JSON.stringify({ stats: analyzer.stats(), cpu: process.cpuUsage(cpu0) }));
    if (line.startsWith("idle")) console.log(JSON.stringify({ idle: await analyzer.idle(Number(line.split(" ")[1])) }));
    if (line === "stop") {
      await analyzer.stop();
      await nc.close();
      process.exit(0);
    }
  }
  process.exit(0);
}

// ---- parent -----------------------------------------------------------------------------------------
const sizes = (process.argv[2] ?? "10,25,50,100,200").split(",").map(Number);
const seconds = Number(process.argv[3] ?? 20);
const rate = Number(process.argv[4] ?? 2);
const self = fileURLToPath(import.meta.url);

interface Replica {
  proc: ChildProcess;
  /** When the replica began connecting (its consumers start pulling right after). */
  startedAtMs: number;
  ask(cmd: string): Promise<Record<string, unknown>>;
}

async function spawnReplica(stack: LocalStack, name: string, latenessMs: number, partitions = 0): Promise<Replica> {
  const proc = spawn(process.execPath, ["--import=tsx", self, "--child", stack.natsUrl, stack.influxUrl, stack.database, name, String(latenessMs), String(partitions)], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  const next = async () => JSON.parse((await lines.next()).value as string) as Record<string, unknown>;
  const ready = await next();
  let chain: Promise<unknown> = Promise.resolve();
  return {
    proc,
    startedAtMs: Number(ready.startedAtMs),
    ask: (cmd) => {
      const p = chain.then(async () => {
        proc.stdin!.write(cmd + "\n");
        return await next();
      });
      chain = p.catch(() => undefined);
      return p;
    },
  };
}

const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

interface RealTimeResult {
  nodes: number;
  replicas: number;
  offeredMsgPerS: number;
  pendingMax: number;
  pendingEnd: number;
  ackPendingEnd: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  rowsSeen: number;
  rowsExpected: number;
  cpuPctOfCore: number;
  keptUp: boolean;
  incompleteWindows: number;
  late: number;
  requestEnergyRatio: number;
  requestsStored: number;
  requestsFinished: number;
  report: FleetReport;
}

async function realTimeRun(stack: LocalStack, nodes: number, replicas: number, partitions = 0): Promise<RealTimeResult> {
  const reps = await Promise.all(Array.from({ length: replicas }, () => spawnReplica(stack, "analyzer", 5000, partitions)));
  const nc = await connect({ servers: stack.natsUrl });
  const jsm = await jetstreamManager(nc);
  const influx = { url: stack.influxUrl, database: stack.database };
  const windowEnds = new Map<number, number>(); // window start → rows seen so far
  const latencies: number[] = [];
  const pendings: number[] = [];
  let startMs = 0;
  let running = true;
  const lagPoll = (async () => {
    while (running) {
      let p = 0;
      // One durable per stream, or one per stream and partition (analyzer-power-p3).
      for (const s of STREAMS) for await (const ci of jsm.consumers.list(s)) if (ci.name.startsWith("analyzer-")) p += ci.num_pending;
      pendings.push(p);
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  const rowPoll = async () => {
    if (startMs === 0) return;
    const now = Date.now();
    const s = await influxQuery(influx, `SELECT count(measured_j) FROM node_energy WHERE time >= ${startMs}ms AND time < ${startMs + seconds * 1000}ms GROUP BY time(1s) fill(0)`);
    for (const r of s[0]?.rows ?? []) {
      const ws = Number(r.time);
      const n = Number(r.count);
      const seen = windowEnds.get(ws) ?? 0;
      for (let k = seen; k < n; k++) latencies.push(now - (ws + 1000));
      windowEnds.set(ws, Math.max(seen, n));
    }
  };
  const latencyPoll = (async () => {
    while (running) {
      await rowPoll().catch(() => undefined);
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  const fleet = startFleet({ nc, nodes, durationS: seconds, realTime: true, ratePerInstanceS: rate, seed: 1, onWindow: (w) => (startMs ||= w.windowStartMs) });
  const report = await fleet.done();
  // Grace: 5 s for the analyzer to finish what the last windows brought.
  const graceEnd = Date.now() + 5000;
  while (Date.now() < graceEnd && latencies.length < report.truth.nodeWindows) await new Promise((r) => setTimeout(r, 250));
  running = false;
  await Promise.all([lagPoll, latencyPoll]);
  let pendingEnd = 0;
  let ackPendingEnd = 0;
  for (const s of STREAMS) {
    for await (const ci of jsm.consumers.list(s)) {
      if (!ci.name.startsWith("analyzer-")) continue;
      pendingEnd += ci.num_pending;
      ackPendingEnd += ci.num_ack_pending;
    }
  }
  const stats = await Promise.all(reps.map((r) => r.ask("stats")));
  const cpuS = stats.reduce((s, x) => s + ((x.cpu as NodeJS.CpuUsage).user + (x.cpu as NodeJS.CpuUsage).system) / 1e6, 0);
  await Promise.all(reps.map((r) => r.ask(`idle 20000`)));
  const join = stats.map((x) => (x.stats as { join: { incompleteWindows: number; late: number } }).join);
  const stored = await readResults(influx);
  for (const r of reps) {
    r.proc.stdin!.write("stop\n");
    await new Promise((res) => r.proc.once("exit", res));
  }
  await nc.close();
  const p99 = quantile(latencies, 0.99);
  const offered = (report.published.total / report.wallS);
  return {
    nodes,
    replicas,
    offeredMsgPerS: +offered.toFixed(0),
    pendingMax: Math.max(0, ...pendings),
    pendingEnd,
    ackPendingEnd,
    latencyP50Ms: +quantile(latencies, 0.5).toFixed(0),
    latencyP99Ms: +p99.toFixed(0),
    rowsSeen: latencies.length,
    rowsExpected: report.truth.nodeWindows,
    cpuPctOfCore: +((100 * cpuS) / (seconds + 5)).toFixed(0),
    // Kept up: nothing undelivered piled up, every window readable in time, p99 under 5 s.
    keptUp: latencies.length === report.truth.nodeWindows && p99 < 5000 && pendingEnd < offered * 2,
    incompleteWindows: join.reduce((s, j) => s + j.incompleteWindows, 0),
    late: join.reduce((s, j) => s + j.late, 0),
    requestEnergyRatio: +(stored.requests.reduce((s, r) => s + r.energyJ, 0) / report.truth.attributedJ).toFixed(4),
    requestsStored: stored.requests.length,
    requestsFinished: report.requests.finished,
    report,
  };
}

/** Drains the streams' backlog with a do-nothing consumer, then with a fresh analyzer: msgs/s each. */
async function drainRun(stack: LocalStack): Promise<{ messages: number; nullMsgPerS: number; analyzerMsgPerS: number }> {
  const nc = await connect({ servers: stack.natsUrl });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  let total = 0;
  const t0 = performance.now();
  await Promise.all(
    STREAMS.map(async (s) => {
      await jsm.consumers.add(s, { durable_name: `null-${s.toLowerCase()}`, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All });
      const n = (await jsm.consumers.info(s, `null-${s.toLowerCase()}`)).num_pending;
      total += n;
      if (n === 0) return;
      const msgs = await (await js.consumers.get(s, `null-${s.toLowerCase()}`)).consume({ max_messages: 512 });
      let got = 0;
      for await (const m of msgs) {
        m.ack();
        if (++got >= n) break;
      }
    }),
  );
  const nullS = (performance.now() - t0) / 1000;
  // A fresh analyzer ("drain": its own consumers and emitted store) redoes all the work.
  const rep = await spawnReplica(stack, "drain", 3600_000);
  const idle = (await rep.ask("idle 120000")).idle;
  // From the replica's start (after its module loading) to idle, which polls every 100 ms.
  const analyzerS = (Date.now() - rep.startedAtMs) / 1000;
  rep.proc.stdin!.write("stop\n");
  await new Promise((res) => rep.proc.once("exit", res));
  await nc.close();
  return { messages: total, nullMsgPerS: +(total / nullS).toFixed(0), analyzerMsgPerS: idle ? +(total / analyzerS).toFixed(0) : 0 };
}

const results: { single: RealTimeResult; drain: Awaited<ReturnType<typeof drainRun>>; two?: RealTimeResult }[] = [];
for (const nodes of sizes) {
  const stack = await startLocalStack();
  try {
    const single = await realTimeRun(stack, nodes, 1);
    const drain = await drainRun(stack);
    results.push({ single, drain });
    process.stderr.write(`${nodes} nodes: kept up ${single.keptUp}, lag max ${single.pendingMax}, p99 ${single.latencyP99Ms} ms, drain ${drain.analyzerMsgPerS}/${drain.nullMsgPerS} msg/s\n`);
    if (!single.keptUp) break;
  } finally {
    await stack.stop();
  }
}
// Two replicas on 8 partitions, at the largest size one kept up with and the first it did not.
const PARTITIONS = 8;
for (const r of results.slice(-2)) {
  const stack = await startLocalStack({ natsExtraConfig: partitionMappings(PARTITIONS) });
  try {
    r.two = await realTimeRun(stack, r.single.nodes, 2, PARTITIONS);
    process.stderr.write(`${r.single.nodes} nodes, 2 replicas: kept up ${r.two.keptUp}, incomplete ${r.two.incompleteWindows}\n`);
  } finally {
    await stack.stop();
  }
}

const row = (cells: (string | number)[]) => cells.map((c, i) => String(c).padStart(i === 0 ? 6 : 11)).join(" ");
console.log(`analyzer vs fleet emulator in real time, ${seconds} s per size, 8 GPUs × 10 Hz per node, 2 instances, ${rate} req/s per instance\n`);
console.log(row(["nodes", "replicas", "msg/s in", "lag max", "lag end", "p50 ms", "p99 ms", "rows", "cpu %", "kept up", "incompl.", "late", "req E/true", "drain a/0"]));
for (const r of results) {
  for (const x of [r.single, r.two]) {
    if (!x) continue;
    console.log(
      row([x.nodes, x.replicas, x.offeredMsgPerS, x.pendingMax, x.pendingEnd, x.latencyP50Ms, x.latencyP99Ms, `${x.rowsSeen}/${x.rowsExpected}`, x.cpuPctOfCore, x.keptUp ? "yes" : "NO", x.incompleteWindows, x.late, x.requestEnergyRatio, x.replicas === 1 ? `${(r.drain.analyzerMsgPerS / r.drain.nullMsgPerS).toFixed(3)}` : "-"]),
    );
  }
}
const kept = results.filter((r) => r.single.keptUp).map((r) => r.single.nodes);
const strip = (x?: RealTimeResult) => (x ? { ...x, report: undefined, publishedMsgs: x.report.published.total, requests: x.report.requests.started } : undefined);
console.log(
  JSON.stringify({
    bench: "analyzer-fleet",
    seconds,
    ratePerInstanceS: rate,
    largestKeptUpNodes: kept.length ? Math.max(...kept) : 0,
    largestKeptUpGpus: kept.length ? Math.max(...kept) * 8 : 0,
    sizes: results.map((r) => ({ single: strip(r.single), drain: { ...r.drain, ratio: r.drain.nullMsgPerS ? +(r.drain.analyzerMsgPerS / r.drain.nullMsgPerS).toFixed(3) : 0 }, two: strip(r.two) })),
  }),
);
process.exit(0);
