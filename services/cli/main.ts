import { helpText, parseCommand } from "../../shared/config.ts";
import { ConfigError, JoulestreamError } from "../../shared/errors.ts";
import type { CliCommand } from "../../shared/command.ts";

/**
 * `joulestream <command>`: one binary for every role. Command modules load lazily so `--help` and
 * small commands start fast.
 */
const COMMANDS: Record<string, { summary: string; load: () => Promise<CliCommand> }> = {
  demo: { summary: "run the whole pipeline locally on a simulated GPU node and print energy per request", load: async () => (await import("./demo.ts")).demoCommand as CliCommand },
  up: { summary: "start a local NATS (JetStream) + InfluxDB stack bound to 127.0.0.1", load: async () => (await import("../../infra/up-command.ts")).upCommand as CliCommand },
  agent: { summary: "node agent: GPU power sampling + request tap, publishing to JetStream", load: async () => (await import("../agent/mod.ts")).agentCommand as CliCommand },
  analyzer: { summary: "join power and requests into energy per request, write to InfluxDB", load: async () => (await import("../analyzer/mod.ts")).analyzerCommand as CliCommand },
  load: { summary: "replay a trace or synthetic workload against OpenAI-compatible endpoints", load: async () => (await import("../loadgen/mod.ts")).loadCommand as CliCommand },
  sim: { summary: "simulated GPU inference node (OpenAI API + DCGM-style /metrics)", load: async () => (await import("../simnode/mod.ts")).simCommand as CliCommand },
  fleet: { summary: "fleet emulator: protocol-level agent traffic of N nodes × 8 GPUs, for load tests", load: async () => (await import("../fleet/command.ts")).fleetCommand as CliCommand },
  sweep: { summary: "run an experiment matrix (clock × batch × TP × workload) and write a tidy table", load: async () => (await import("../lab/command.ts")).sweepCommand as CliCommand },
  report: { summary: "render a sweep's results as one self-contained HTML report with charts", load: async () => (await import("../lab/command.ts")).reportCommand as CliCommand },
  govern: { summary: "energy governor: per instance, the least-energy SM clock within the SLO, through the agents' clock control", load: async () => (await import("../governor/mod.ts")).governCommand as CliCommand },
  calibrate: { summary: "measure a deployment's static power and prefill energy per token for the analyzer's attribution", load: async () => (await import("../lab/command.ts")).calibrateCommand as CliCommand },
  "govern-eval": { summary: "evaluate the governor on a simulated fleet: the same trace replay at max clock, the lab's static choice, and governed", load: async () => (await import("../lab/mod.ts")).governEvalCommand as CliCommand },
  tail: { summary: "print the decoded messages of a subject as JSON lines", load: async () => (await import("./tail.ts")).tailCommand as CliCommand },
  traces: { summary: "download the full public traces (Azure 2023/2024, Mooncake, BurstGPT) to a cache, checksummed", load: async () => (await import("./traces.ts")).tracesCommand as CliCommand },
};

function usage(): string {
  const w = Math.max(...Object.keys(COMMANDS).map((k) => k.length)) + 2;
  return [
    "joulestream — energy per LLM request, measured live across GPU fleets",
    "",
    "Usage: joulestream <command> [options]   (joulestream <command> --help for its options)",
    "",
    "Commands:",
    ...Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(w)}${c.summary}`),
    "",
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`joulestream: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return 2;
  }
  const cmd = await entry.load();
  const parsed = parseCommand(cmd.spec, rest);
  if (parsed.help) {
    process.stdout.write(helpText(cmd.spec));
    return 0;
  }
  return await cmd.run(parsed.config, parsed.positionals);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`joulestream: ${err.message}\n`);
      process.exitCode = 2;
    } else if (err instanceof JoulestreamError) {
      process.stderr.write(`joulestream: ${err.message}\n`);
      process.exitCode = 1;
    } else if (isSystemError(err) && !process.env.JOULESTREAM_DEBUG) {
      // The operating system said no (port taken, no permission, not a directory, disk full): its
      // message names what and where; a stack trace of Node's internals helps nobody.
      process.stderr.write(`joulestream: ${err.message}${SYSTEM_HINTS[err.code] ? ` (${SYSTEM_HINTS[err.code]})` : ""}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`joulestream: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    }
  },
);

function isSystemError(err: unknown): err is NodeJS.ErrnoException & { code: string } {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === "string" && typeof (err as NodeJS.ErrnoException).syscall === "string";
}

const SYSTEM_HINTS: Record<string, string> = {
  EADDRINUSE: "another process listens there: pick another port, or 0 for a free one",
  EACCES: "no permission",
  ENOSPC: "the disk is full",
};
