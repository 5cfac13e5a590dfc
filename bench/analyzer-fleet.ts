/**
 * The analyzer at fleet scale (issue 15), on a fresh local stack (nats-server + influxd) per phase,
 * each analyzer in a child process of its own (its CPU and start-up counted apart):
 *
 *   npm run bench -- analyzer-fleet [--only drain,backlog,realtime,replicas]
 *       [--drain-nodes 300] [--drain-seconds 30]          drain ratio: analyzer / do-nothing consumer on one recorded backlog
 *       [--backlog-nodes 1250] [--backlog-seconds 60]     the 10,000-GPU backlog, drained by one analyzer (faster than real time?)
 *       [--realtime 100,300,600,1250] [--seconds 20]      real time: the largest fleet one analyzer keeps up with
 *       [--replicas 1,2] [--partitions 8]                 pinned replicas (taskset, one core each) on a partitioned backlog
 *   (`analyzer-fleet 100,300 15` still means --realtime 100,300 --seconds 15)
 *
 * Backlogs are recorded with the fleet emulator in fast mode, with one REQUESTS batch per node and
 * 100-ms tick as agents publish (13 messages per node and second: POWER, 2 × WORK, 10 × REQUESTS),
 * 8 GPUs and 2 TP=4 instances per node at 2 req/s each. Every phase checks what was stored against
 * the emulator's truth: request count, worst per-request energy error, conservation, incomplete.
 * Last line: one JSON object, with `drainRatio`, `backlog10kGpuS` and `largestKeptUpGpus`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { jetstream, jetstreamManager, AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { createInfluxSink, partitionMappings, startAnalyzer } from "../services/analyzer/mod.ts";
import { startFleet, type FleetEmulator, type FleetReport } from "../services/fleet/emulator.ts";
import { readResults } from "../test/helpers/analyzer-harness.ts";
import { startLocalStack, type LocalStack } from "../infra/local-stack.ts";
import { cpuSecondsOf, machineBusyPct, machineTicks } from "./helpers/proc.ts";
import { influxQuery, mjToJ } from "../shared/mod.ts";

const STREAMS = ["POWER", "WORK", "REQUESTS"] as const;
/** Real time: how often InfluxDB is asked which windows' rows are readable. */
const ROW_POLL_MS = 100;

// ---- child: one analyzer, driven over stdin/stdout; it exits when its parent goes ----------------
if (process.argv[2] === "--child") {
  const [natsUrl, influxUrl, database, name, latenessMs, partitions] = process.argv.slice(3) as [string, string, string, string, string, string];
  process.stdin.on("close", () => process.exit(0)); // parent killed (timeout, Ctrl-C): leave nothing behind
  const startedAtMs = Date.now();
  const cpu0 = process.cpuUsage(); // from here: the analyzer's start-up and work, not module loading
  const nc = await connect({ servers: natsUrl, noAsyncTraces: true });
  const analyzer = await startAnalyzer({ nc, sink: createInfluxSink({ url: influxUrl, database, api: "v1" }), name, allowedLatenessMs: Number(latenessMs), partitions: Number(partitions ?? 0) });
  console.log(JSON.stringify({ ready: true, startedAtMs }));
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === "stats") console.log(JSON.stringify({ stats: analyzer.stats(), cpu: process.cpuUsage(cpu0) }));
    if (line.startsWith("idle")) console.log(JSON.stringify({ idle: await analyzer.idle(Number(line.split(" ")[1])), atMs: Date.now(), cpu: process.cpuUsage(cpu0) }));
    if (line === "stop") {
      await analyzer.stop();
      await nc.close();
      process.exit(0);
    }
  }
  process.exit(0);
}

// ---- parent -----------------------------------------------------------------------------------------
const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    only: { type: "string", default: "drain,backlog,realtime,replicas" },
    "drain-nodes": { type: "string", default: "300" },
    "drain-seconds": { type: "string", default: "30" },
    "backlog-nodes": { type: "string", default: "1250" },
    "backlog-seconds": { type: "string", default: "60" },
    realtime: { type: "string", default: "100,300,600,1250" },
    seconds: { type: "string", default: "20" },
    replicas: { type: "string", default: "1,2" },
    partitions: { type: "string", default: "8" },
    rate: { type: "string", default: "2" },
  },
});
if (positionals[0]) flags.realtime = positionals[0];
if (positionals[1]) flags.seconds = positionals[1];
const only = new Set(flags.only.split(","));
const rate = Number(flags.rate);
const self = fileURLToPath(import.meta.url);
const children = new Set<ChildProcess>();
const stacks = new Set<LocalStack>();
const cleanUp = () => {
  for (const c of children) c.kill("SIGKILL");
};
process.on("exit", cleanUp);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    cleanUp();
    void Promise.all([...stacks].map((s) => s.stop())).finally(() => process.exit(130));
  });
}
const log = (line: string) => process.stderr.write(`analyzer-fleet: ${line}\n`);

interface Replica {
  proc: ChildProcess;
  startedAtMs: number;
  ask(cmd: string): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** An analyzer child; `cpus` pins it with taskset (e.g. "1"). */
async function spawnReplica(stack: LocalStack, name: string, latenessMs: number, partitions = 0, cpus?: string): Promise<Replica> {
  const args = ["--import=tsx", self, "--child", stack.natsUrl, stack.influxUrl, stack.database, name, String(latenessMs), String(partitions)];
  const proc = cpus ? spawn("taskset", ["-c", cpus, process.execPath, ...args], { stdio: ["pipe", "pipe", "inherit"] }) : spawn(process.execPath, args, { stdio: ["pipe", "pipe", "inherit"] });
  children.add(proc);
  proc.once("exit", () => children.delete(proc));
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  const next = async () => JSON.parse((await lines.next()).value as string) as Record<string, unknown>;
  const ready = await next();
  let chain: Promise<unknown> = Promise.resolve();
  const ask = (cmd: string) => {
    const p = chain.then(async () => {
      proc.stdin!.write(cmd + "\n");
      return await next();
    });
    chain = p.catch(() => undefined);
    return p;
  };
  return {
    proc,
    startedAtMs: Number(ready.startedAtMs),
    ask,
    stop: async () => {
      proc.stdin!.write("stop\n");
      await new Promise((r) => proc.once("exit", r));
    },
  };
}

async function withStack<T>(opts: Parameters<typeof startLocalStack>[0], fn: (s: LocalStack) => Promise<T>): Promise<T> {
  const stack = await startLocalStack(opts);
  stacks.add(stack);
  try {
    return await fn(stack);
  } finally {
    await stack.stop();
    stacks.delete(stack);
  }
}

const cpuS = cpuSecondsOf;
const quantile = (xs: number[], q: number) => (xs.length === 0 ? Number.NaN : [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!);
const median = (xs: number[]) => quantile(xs, 0.5);

async function recordBacklog(stack: LocalStack, nodes: number, seconds: number): Promise<{ fleet: FleetEmulator; report: FleetReport; recordS: number }> {
  const nc = await connect({ servers: stack.natsUrl, noAsyncTraces: true });
  const t0 = performance.now();
  const fleet = startFleet({ nc, nodes, durationS: seconds, ratePerInstanceS: rate, seed: 1, tickBatches: true, maxInFlight: 4096 });
  const report = await fleet.done();
  await nc.close();
  return { fleet, report, recordS: (performance.now() - t0) / 1000 };
}

/** A do-nothing durable consumer per stream (acks only), all three at once: the transport's pace. */
async function bareDrain(stack: LocalStack, run: number): Promise<{ messages: number; s: number }> {
  const nc = await connect({ servers: stack.natsUrl, noAsyncTraces: true });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  let total = 0;
  const t0 = performance.now();
  await Promise.all(
    STREAMS.map(async (s) => {
      const durable = `null-${s.toLowerCase()}-${run}`;
      await jsm.consumers.add(s, { durable_name: durable, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All });
      const n = (await jsm.consumers.info(s, durable)).num_pending;
      total += n;
      if (n === 0) return;
      const msgs = await (await js.consumers.get(s, durable)).consume({ max_messages: 4096 });
      let got = 0;
      for await (const m of msgs) {
        m.ack();
        if (++got >= n) break;
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  await nc.close();
  return { messages: total, s };
}

interface Check {
  requestsStored: number;
  requestsExpected: number;
  worstRequestRelErr: number;
  conservationRelErr: number;
  measuredRelErr: number;
  incompleteWindows: number;
  incompleteRequests: number;
}

/** What the analyzer stored against the emulator's truth. */
async function check(stack: LocalStack, fleet: FleetEmulator, report: FleetReport): Promise<Check> {
  const influx = { url: stack.influxUrl, database: stack.database };
  const stored = await readResults(influx);
  const expected = fleet.expectedRequests();
  let worst = 0;
  for (const r of stored.requests) {
    const e = expected.get(`${r.node}/${r.requestId}`);
    worst = Math.max(worst, e ? Math.abs(r.energyJ - mjToJ(e.energyMj)) / Math.max(mjToJ(e.energyMj), 1e-9) : Number.POSITIVE_INFINITY);
  }
  const sums = (await influxQuery(influx, `SELECT sum("measured_j") AS m, sum("attributed_j") AS a, sum("idle_j") AS i FROM "node_energy"`))[0]?.rows[0] ?? {};
  const [m, a, i] = [Number(sums.m), Number(sums.a), Number(sums.i)];
  return {
    requestsStored: stored.requests.length,
    requestsExpected: expected.size,
    worstRequestRelErr: worst,
    conservationRelErr: Math.abs(a + i - m) / m,
    measuredRelErr: Math.abs(m - report.truth.measuredJ) / report.truth.measuredJ,
    incompleteWindows: stored.incompleteWindows,
    incompleteRequests: stored.requests.filter((r) => r.incomplete).length,
  };
}
const correct = (c: Check) => c.requestsStored === c.requestsExpected && c.worstRequestRelErr <= 1e-9 && c.conservationRelErr <= 1e-6 && c.measuredRelErr <= 1e-6 && c.incompleteWindows === 0 && c.incompleteRequests === 0;

/** One analyzer drains a recorded backlog: seconds from its start (after module loading) to idle. */
async function analyzerDrain(stack: LocalStack, name: string, pin?: string): Promise<{ s: number; cpuS: number; natsCpuS: number; influxCpuS: number; machineBusyPct: number; pacingHolds: number; checkpoints: number }> {
  const n0 = cpuS(stack.pids.nats);
  const i0 = cpuS(stack.pids.influxd);
  const m0 = machineTicks();
  const rep = await spawnReplica(stack, name, 3600_000, 0, pin);
  const r = await rep.ask("idle 1800000");
  const m1 = machineTicks();
  if (r.idle !== true) throw new Error(`${name}: the analyzer did not drain the backlog in 30 min`);
  const s = (Number(r.atMs) - rep.startedAtMs) / 1000;
  const cpu = r.cpu as NodeJS.CpuUsage;
  const st = (await rep.ask("stats")).stats as { pacing?: { holds: number }; checkpoints: number };
  await rep.stop();
  // How busy both cores were from the analyzer's start to idle (its module loading included).
  return { s, cpuS: (cpu.user + cpu.system) / 1e6, natsCpuS: cpuS(stack.pids.nats) - n0, influxCpuS: cpuS(stack.pids.influxd) - i0, machineBusyPct: machineBusyPct(m0, m1), pacingHolds: st.pacing?.holds ?? 0, checkpoints: st.checkpoints };
}

// ---- phases -----------------------------------------------------------------------------------------
const out: Record<string, unknown> = { bench: "analyzer-fleet", ratePerInstanceS: rate };

if (only.has("drain")) {
  const nodes = Number(flags["drain-nodes"]);
  const seconds = Number(flags["drain-seconds"]);
  await withStack({}, async (stack) => {
    const { fleet, report, recordS } = await recordBacklog(stack, nodes, seconds);
    log(`drain: recorded ${report.published.total} messages (${nodes} nodes × ${seconds} s) in ${recordS.toFixed(1)} s`);
    // The do-nothing consumer three times (cheap, and the noisiest figure on a shared machine): its median.
    const bare = [await bareDrain(stack, 1), await bareDrain(stack, 2), await bareDrain(stack, 3)];
    const a = await analyzerDrain(stack, "drain");
    const c = await check(stack, fleet, report);
    const bareMsgPerS = report.published.total / median(bare.map((b) => b.s));
    const analyzerMsgPerS = report.published.total / a.s;
    out.drain = { nodes, seconds, messages: report.published.total, bareMsgPerS: Math.round(bareMsgPerS), bareRunsMsgPerS: bare.map((b) => Math.round(report.published.total / b.s)), analyzerMsgPerS: Math.round(analyzerMsgPerS), analyzerS: +a.s.toFixed(2), analyzerCpuS: +a.cpuS.toFixed(1), natsCpuS: +a.natsCpuS.toFixed(1), influxCpuS: +a.influxCpuS.toFixed(1), machineBusyPct: a.machineBusyPct, correct: correct(c), ...c };
    out.drainRatio = +(analyzerMsgPerS / bareMsgPerS).toFixed(3);
    log(`drain: bare ${Math.round(bareMsgPerS)} msg/s, analyzer ${Math.round(analyzerMsgPerS)} msg/s (ratio ${out.drainRatio}), correct ${correct(c)}`);
  });
}

if (only.has("backlog")) {
  const nodes = Number(flags["backlog-nodes"]);
  const seconds = Number(flags["backlog-seconds"]);
  await withStack({}, async (stack) => {
    const { fleet, report, recordS } = await recordBacklog(stack, nodes, seconds);
    log(`backlog: recorded ${report.published.total} messages (${nodes} nodes = ${report.gpus} GPUs × ${seconds} s) in ${recordS.toFixed(1)} s`);
    const a = await analyzerDrain(stack, "backlog");
    const c = await check(stack, fleet, report);
    out.backlog = { nodes, gpus: report.gpus, seconds, messages: report.published.total, requests: report.requests.finished, drainS: +a.s.toFixed(1), fasterThanRealTime: a.s < seconds, msgPerS: Math.round(report.published.total / a.s), analyzerCpuS: +a.cpuS.toFixed(1), pacingHolds: a.pacingHolds, checkpoints: a.checkpoints, natsCpuS: +a.natsCpuS.toFixed(1), influxCpuS: +a.influxCpuS.toFixed(1), machineBusyPct: a.machineBusyPct, correct: correct(c), ...c };
    if (report.gpus === 10_000 && seconds === 60) out.backlog10kGpuS = +a.s.toFixed(1);
    log(`backlog: drained in ${a.s.toFixed(1)} s (${seconds} s of fleet time), correct ${correct(c)}`);
  });
}

if (only.has("realtime")) {
  const seconds = Number(flags.seconds);
  const sizes: Record<string, unknown>[] = [];
  for (const nodes of flags.realtime.split(",").map(Number)) {
    const r = await withStack({}, (stack) => realTimeRun(stack, nodes, seconds));
    sizes.push(r);
    log(`realtime: ${nodes} nodes (${nodes * 8} GPUs): kept up ${r.keptUp}, lag max ${r.pendingMax}, window→row p99 ${r.latencyP99Ms} ms (from the emulator handing it over: p99 ${r.afterHandedP99Ms} ms; emulator behind schedule up to ${r.emulatorMaxLagMs} ms), analyzer ${r.cpuPctOfCore}% of a core; emulator ${r.emulatorCpuPctOfCore}%, nats-server ${r.natsCpuPctOfCore}%, influxd ${r.influxCpuPctOfCore}%; both cores ${r.machineBusyPct}% busy`);
    if (!r.keptUp) break;
  }
  const kept = sizes.filter((s) => s.keptUp).map((s) => Number(s.nodes));
  out.realtime = sizes;
  out.largestKeptUpGpus = kept.length ? Math.max(...kept) * 8 : 0;
}

if (only.has("replicas")) {
  const nodes = Number(flags["drain-nodes"]);
  const seconds = Number(flags["drain-seconds"]);
  const partitions = Number(flags.partitions);
  const cores = (await import("node:os")).availableParallelism();
  const rows: Record<string, unknown>[] = [];
  for (const n of flags.replicas.split(",").map(Number)) {
    const row = await withStack({ natsExtraConfig: partitionMappings(partitions) }, async (stack) => {
      const { fleet, report } = await recordBacklog(stack, nodes, seconds);
      const n0 = cpuS(stack.pids.nats);
      const i0 = cpuS(stack.pids.influxd);
      // Replica k on core (cores - 1 - k): away from core 0 where the servers' first threads start.
      const reps = await Promise.all(Array.from({ length: n }, (_, k) => spawnReplica(stack, "rep", 3600_000, partitions, String((cores - 1 - (k % cores) + cores) % cores))));
      const t0 = Math.min(...reps.map((r) => r.startedAtMs));
      // Every replica idle (the partitions settle among them first).
      const done = await Promise.all(reps.map((r) => r.ask("idle 1800000")));
      const s = (Math.max(...done.map((d) => Number(d.atMs))) - t0) / 1000;
      const cpu = done.reduce((acc, d) => acc + ((d.cpu as NodeJS.CpuUsage).user + (d.cpu as NodeJS.CpuUsage).system) / 1e6, 0);
      await Promise.all(reps.map((r) => r.stop()));
      const c = await check(stack, fleet, report);
      return { replicas: n, partitions, messages: report.published.total, s: +s.toFixed(2), msgPerS: Math.round(report.published.total / s), analyzersCpuS: +cpu.toFixed(1), natsCpuS: +(cpuS(stack.pids.nats) - n0).toFixed(1), influxCpuS: +(cpuS(stack.pids.influxd) - i0).toFixed(1), correct: correct(c), ...c };
    });
    rows.push(row);
    log(`replicas: ${n} pinned on ${partitions} partitions: ${row.msgPerS} msg/s, correct ${row.correct}`);
  }
  out.replicas = { cores, rows };
}

// ---- real time ----------------------------------------------------------------------------------------
async function realTimeRun(stack: LocalStack, nodes: number, seconds: number): Promise<Record<string, unknown> & { keptUp: boolean; nodes: number }> {
  const rep = await spawnReplica(stack, "analyzer", 5000);
  const nc = await connect({ servers: stack.natsUrl, noAsyncTraces: true });
  const jsm = await jetstreamManager(nc);
  const influx = { url: stack.influxUrl, database: stack.database };
  const rowsSeen = new Map<number, number>(); // window start → rows seen so far
  const latencies: number[] = [];
  // When the emulator had handed each window's last message (of all its nodes) to the publisher: the
  // part of the latency that is the emulator's (one process publishing for the whole fleet), not the analyzer's.
  const handedAt = new Map<number, number>();
  const afterHanded: number[] = [];
  let pollFromMs = 0; // windows before this are all seen: the poll's query skips them
  const pendings: number[] = [];
  let startMs = 0;
  let running = true;
  const lagPoll = (async () => {
    while (running) {
      let p = 0;
      for (const s of STREAMS) for await (const ci of jsm.consumers.list(s)) if (ci.name.startsWith("analyzer-")) p += ci.num_pending;
      pendings.push(p);
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
  const rowPoll = async () => {
    if (startMs === 0) return;
    const now = Date.now();
    const from = Math.max(startMs, pollFromMs);
    const s = await influxQuery(influx, `SELECT count(measured_j) FROM node_energy WHERE time >= ${from}ms AND time < ${startMs + seconds * 1000}ms GROUP BY time(1s) fill(0)`);
    let allSeenTo = from;
    for (const r of s[0]?.rows ?? []) {
      const ws = Number(r.time);
      const n = Number(r.count);
      const seen = rowsSeen.get(ws) ?? 0;
      const handed = handedAt.get(ws);
      for (let k = seen; k < n; k++) {
        latencies.push(now - (ws + 1000));
        if (handed !== undefined) afterHanded.push(now - handed);
      }
      rowsSeen.set(ws, Math.max(seen, n));
      if (Math.max(seen, n) >= nodes && allSeenTo === ws) allSeenTo = ws + 1000;
    }
    pollFromMs = allSeenTo;
  };
  // A row is counted when a poll first sees it, so the poll's period is added to its latency (half
  // of it on average, all of it at worst): every 100 ms, not 250, so that it adds under 0.1 s to p99.
  const latencyPoll = (async () => {
    while (running) {
      await rowPoll().catch(() => undefined);
      await new Promise((r) => setTimeout(r, ROW_POLL_MS));
    }
  })();
  const c0 = await rep.ask("stats");
  // Who used the machine while the fleet ran: the emulator (this process, with its polls), the
  // servers, and how busy both cores were (the analyzer's share is its own figure below).
  const own0 = process.cpuUsage();
  const [n0, i0, m0] = [cpuS(stack.pids.nats), cpuS(stack.pids.influxd), machineTicks()];
  const wall0 = performance.now();
  const fleet = startFleet({ nc, nodes, durationS: seconds, realTime: true, ratePerInstanceS: rate, seed: 1, onWindow: (w) => {
    startMs ||= w.windowStartMs;
    handedAt.set(w.windowStartMs, w.wallMs);
  } });
  const report = await fleet.done();
  const fleetS = (performance.now() - wall0) / 1000;
  const own = process.cpuUsage(own0);
  const m1 = machineTicks();
  const share = { emulatorCpuPctOfCore: Math.round((100 * (own.user + own.system)) / 1e6 / fleetS), natsCpuPctOfCore: Math.round((100 * (cpuS(stack.pids.nats) - n0)) / fleetS), influxCpuPctOfCore: Math.round((100 * (cpuS(stack.pids.influxd) - i0)) / fleetS), machineBusyPct: machineBusyPct(m0, m1) };
  const graceEnd = Date.now() + 5000;
  while (Date.now() < graceEnd && latencies.length < report.truth.nodeWindows) await new Promise((r) => setTimeout(r, 250));
  running = false;
  await Promise.all([lagPoll, latencyPoll]);
  const c1 = await rep.ask("stats");
  const cpu = (x: Record<string, unknown>) => ((x.cpu as NodeJS.CpuUsage).user + (x.cpu as NodeJS.CpuUsage).system) / 1e6;
  const usedS = cpu(c1) - cpu(c0);
  const idle = await rep.ask("idle 60000");
  await rep.stop();
  const c = await check(stack, fleet, report);
  await nc.close();
  const p99 = quantile(latencies, 0.99);
  const offered = report.published.total / report.wallS;
  const pendingEnd = pendings[pendings.length - 1] ?? 0;
  return {
    nodes,
    gpus: nodes * 8,
    offeredMsgPerS: Math.round(offered),
    pendingMax: Math.max(0, ...pendings),
    pendingEnd,
    latencyP50Ms: Math.round(quantile(latencies, 0.5)),
    latencyP99Ms: Math.round(p99),
    // From the emulator having handed the window's messages over: the analyzer's (and InfluxDB's) part.
    afterHandedP50Ms: Math.round(quantile(afterHanded, 0.5)),
    afterHandedP99Ms: Math.round(quantile(afterHanded, 0.99)),
    emulatorMaxLagMs: Math.round(report.maxLagMs),
    rowsSeen: latencies.length,
    rowsExpected: report.truth.nodeWindows,
    cpuPctOfCore: Math.round((100 * usedS) / (seconds + 5)),
    ...share,
    // Kept up: every window readable within the run's grace, p99 under 2 s, nothing piled up.
    keptUp: latencies.length === report.truth.nodeWindows && p99 < 2000 && pendingEnd < offered * 2,
    idleAfter: idle.idle === true,
    correct: correct(c),
    ...c,
  };
}

// ---- report -----------------------------------------------------------------------------------------
const fmt = (x: unknown) => JSON.stringify(x);
process.stdout.write(`analyzer-fleet (${(await import("node:os")).availableParallelism()} cores), ${rate} req/s per instance, 8 GPUs × 10 Hz and 2 TP=4 instances per node\n`);
if (out.drain) process.stdout.write(`drain:    ${fmt(out.drain)}\n`);
if (out.backlog) process.stdout.write(`backlog:  ${fmt(out.backlog)}\n`);
if (out.realtime) for (const r of out.realtime as unknown[]) process.stdout.write(`realtime: ${fmt(r)}\n`);
if (out.replicas) for (const r of (out.replicas as { rows: unknown[] }).rows) process.stdout.write(`replicas: ${fmt(r)}\n`);
console.log(JSON.stringify(out));
process.exit(0);
