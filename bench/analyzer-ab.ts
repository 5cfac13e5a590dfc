/**
 * The analyzer of this checkout against the analyzer of another revision, on the same recorded
 * backlog (what issue 15's closing note compares):
 *
 *   npm run bench -- analyzer-ab [--base REV] [--nodes 300] [--seconds 30] [--runs 2] [--cpu-prof DIR]
 *
 * A fresh local stack gets a backlog from the fleet emulator (fast mode, one REQUESTS batch per node
 * and tick, as agents publish); then each analyzer drains it in a child process of its own, under
 * its own consumer name, from start to idle: seconds, msg/s, its CPU and nats-server's and influxd's
 * over the drain. `--base` makes a `git worktree` of REV in a temporary folder (node_modules linked)
 * and runs that revision's `startAnalyzer` and `createInfluxSink` (whose option names have not
 * changed since the first analyzer), with its connection as its command made it (a tree whose
 * shared/nats.ts sets `noAsyncTraces` skips async stack traces, older revisions did not), the two
 * taking turns to go first. `--cpu-prof DIR` writes each child's CPU profile there.
 * Last line: one JSON object.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { connect } from "@nats-io/transport-node";
import { startFleet } from "../services/fleet/emulator.ts";
import { startLocalStack } from "../infra/local-stack.ts";
import { cpuSecondsOf } from "./helpers/proc.ts";
import type * as AnalyzerMod from "../services/analyzer/mod.ts";

type AnalyzerModule = typeof AnalyzerMod;

// ---- child: one analyzer from the tree at ROOT drains to idle --------------------------------------
if (process.argv[2] === "--child") {
  const [root, natsUrl, influxUrl, database, name, asyncTraces] = process.argv.slice(3) as [string, string, string, string, string, string];
  // Deep paths, not mod.ts: an older revision has no analyzer mod.ts; the two names are the same.
  const { startAnalyzer } = (await import(pathToFileURL(join(root, "services/analyzer/analyzer.ts")).href)) as Pick<AnalyzerModule, "startAnalyzer">;
  const { createInfluxSink } = (await import(pathToFileURL(join(root, "services/analyzer/influx-sink.ts")).href)) as Pick<AnalyzerModule, "createInfluxSink">;
  // Timed from here: the analyzer's start-up and work, not loading its modules.
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  // Each revision's connection as its command made it (HEAD's skips async stack traces).
  const nc = await connect({ servers: natsUrl, noAsyncTraces: asyncTraces === "off" });
  const a = await startAnalyzer({ nc, sink: createInfluxSink({ url: influxUrl, database, api: "v1" }), name, allowedLatenessMs: 3600_000 });
  const idle = await a.idle(1_800_000);
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ idle, s: (performance.now() - t0) / 1000, cpuS: (cpu.user + cpu.system) / 1e6 }));
  await a.stop();
  await nc.close();
  process.exit(0);
}

const { values: flags } = parseArgs({
  options: { base: { type: "string" }, nodes: { type: "string", default: "300" }, seconds: { type: "string", default: "30" }, runs: { type: "string", default: "2" }, "cpu-prof": { type: "string" } },
});
const self = fileURLToPath(import.meta.url);
const here = resolve(fileURLToPath(new URL("..", import.meta.url)));
const cpuOf = cpuSecondsOf;

let baseRoot: string | undefined;
if (flags.base) {
  baseRoot = join(mkdtempSync(join(tmpdir(), "analyzer-ab-")), "base");
  execFileSync("git", ["worktree", "add", "--detach", baseRoot, flags.base], { cwd: here, stdio: "ignore" });
  symlinkSync(join(here, "node_modules"), join(baseRoot, "node_modules"));
}
/**
 * Whether the tree's own connections skip async stack traces (shared/nats.ts sets `noAsyncTraces`
 * since it did): the child connects as that tree's command would. Deciding by label ran a base
 * that is HEAD with them on, ~15-25 % more CPU for the same code.
 */
function skipsAsyncTraces(root: string): boolean {
  try {
    return readFileSync(join(root, "shared/nats.ts"), "utf8").includes("noAsyncTraces");
  } catch {
    return false;
  }
}
const stack = await startLocalStack();
const cleanUp = async () => {
  await stack.stop();
  if (baseRoot) {
    execFileSync("git", ["worktree", "remove", "--force", baseRoot], { cwd: here, stdio: "ignore" });
    rmSync(resolve(baseRoot, ".."), { recursive: true, force: true });
  }
};
process.on("SIGINT", () => void cleanUp().finally(() => process.exit(130)));
try {
  const nc = await connect({ servers: stack.natsUrl });
  const report = await startFleet({ nc, nodes: Number(flags.nodes), durationS: Number(flags.seconds), seed: 1, tickBatches: true, maxInFlight: 4096 }).done();
  await nc.close();
  const messages = report.published.total;
  process.stderr.write(`analyzer-ab: ${messages} messages (${flags.nodes} nodes × ${flags.seconds} s)\n`);
  const trees: [string, string][] = [["head", here], ...(baseRoot ? ([[`base ${flags.base}`, baseRoot]] as [string, string][]) : [])];
  const rows: Record<string, unknown>[] = [];
  for (let run = 1; run <= Number(flags.runs); run++) {
    // Odd runs drain with the base first, even runs with this checkout first: the first drain of a run
    // reads a backlog nothing has read yet and writes series nothing has written (with `--base HEAD`,
    // one run each: 6.2 CPU-s first against 5.3 second, same code).
    for (const [label, root] of run % 2 === 1 ? [...trees].reverse() : trees) {
      const n0 = cpuOf(stack.pids.nats);
      const i0 = cpuOf(stack.pids.influxd);
      const prof = flags["cpu-prof"] ? ["--cpu-prof", `--cpu-prof-dir=${resolve(flags["cpu-prof"], `${label.split(" ")[0]}-${run}`)}`] : [];
      const r = spawnSync(process.execPath, [...prof, "--import=tsx", self, "--child", root, stack.natsUrl, stack.influxUrl, stack.database, `ab${run}${label.split(" ")[0]}`, skipsAsyncTraces(root) ? "off" : "on"], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
      const out = JSON.parse(r.stdout.toString().trim().split("\n").pop()!) as { idle: boolean; s: number; cpuS: number };
      const row = { analyzer: label, run, idle: out.idle, s: +out.s.toFixed(2), msgPerS: Math.round(messages / out.s), analyzerCpuS: +out.cpuS.toFixed(1), natsCpuS: +(cpuOf(stack.pids.nats) - n0).toFixed(1), influxCpuS: +(cpuOf(stack.pids.influxd) - i0).toFixed(1) };
      rows.push(row);
      process.stderr.write(`analyzer-ab: ${JSON.stringify(row)}\n`);
    }
  }
  console.log(JSON.stringify({ bench: "analyzer-ab", nodes: Number(flags.nodes), seconds: Number(flags.seconds), messages, rows }));
} finally {
  await cleanUp();
}
process.exit(0);
