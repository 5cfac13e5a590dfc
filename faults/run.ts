import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { runScenario, type ScenarioResult } from "./scenario-run.ts";
import { SCALES, SCENARIOS, type Scale } from "./scenarios.ts";
import type { Row } from "./verdict.ts";

/**
 * `npm run faults [-- --only NAME,… --scale short|full]`: the fault suite of issue 19 on a local
 * 3-node cluster. Each scenario prints expected vs observed; the exit status is 1 when any
 * scenario lost or changed a result, crashed a process, or could not run.
 */
const HELP = `usage: npm run faults -- [--only NAME,...] [--scale short|full] [--verbose]

Runs each fault scenario on fresh local servers (3-node NATS cluster, influxd), with a simulated
node, an agent, the analyzer and a Poisson load, and compares what the analyzer stored with what
an unfaulted analyzer stores from the same recorded streams. Exit status 1 on any loss.

  --only NAME,...   scenarios to run (default all): ${SCENARIOS.map((s) => s.name).join(", ")}
  --scale S         short (a few seconds per fault) or full (the issue's durations: a server
                    down 60 s, InfluxDB frozen 30 s, 10,000 hostile messages); default full
  --verbose         the services' own log lines on stderr
  --help

Scenarios:
${SCENARIOS.map((s) => `  ${s.name.padEnd(17)} ${s.what}`).join("\n")}
`;

export function formatResult(r: ScenarioResult): string {
  const width = (f: (x: Row) => string, title: string) => Math.max(title.length, ...r.rows.map((x) => f(x).length));
  const wc = width((x) => x.check, "check");
  const we = width((x) => x.expected, "expected");
  const line = (a: string, b: string, c: string, d: string) => `  ${a.padEnd(wc)}  ${b.padEnd(we)}  ${c}${d ? `  ${d}` : ""}`;
  const failed = r.rows.filter((x) => !x.ok).length;
  return [
    `== ${r.scenario}: ${r.fault} (${r.wallS.toFixed(0)} s; analyzer caught up ${r.catchUpS.toFixed(1)} s after the agent's last message) ${failed ? `FAILED (${failed})` : "passed"}`,
    line("check", "expected", "observed", ""),
    ...r.rows.map((x) => line(x.check, x.expected, x.observed, x.ok ? "" : "<-- FAIL")),
  ].join("\n");
}

export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s + "\n"), err: (s: string) => void = (s) => process.stderr.write(s + "\n")): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { only: { type: "string" }, scale: { type: "string", default: "full" }, verbose: { type: "boolean", default: false }, help: { type: "boolean", default: false } } }));
  } catch (e) {
    err(`${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    out(HELP);
    return 0;
  }
  const scale: Scale | undefined = SCALES[values.scale as Scale["name"]];
  if (!scale) {
    err(`--scale: ${JSON.stringify(values.scale)}: use short or full`);
    return 2;
  }
  const names = values.only ? values.only.split(",").map((s) => s.trim()).filter(Boolean) : SCENARIOS.map((s) => s.name);
  const unknown = names.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) {
    err(`--only: unknown scenario(s) ${unknown.join(", ")}; known: ${SCENARIOS.map((s) => s.name).join(", ")}`);
    return 2;
  }
  const log = values.verbose ? (l: string) => err(`  | ${l}`) : () => {};
  let passed = 0;
  let failed = 0;
  for (const sc of SCENARIOS.filter((s) => names.includes(s.name))) {
    err(`running ${sc.name} (${scale.name}): ${sc.what}`);
    try {
      const r = await runScenario(sc, scale, log);
      out(formatResult(r));
      if (r.rows.every((x) => x.ok)) passed++;
      else failed++;
    } catch (e) {
      out(`== ${sc.name}: could not run: ${(e as Error).stack ?? String(e)}`);
      failed++;
    }
  }
  out(`${passed} scenarios passed, ${failed} failed`);
  return failed > 0 ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const code = await main(process.argv.slice(2));
  // Whatever a scenario left running (it should be nothing) does not hold the verdict back.
  process.exit(code);
}
