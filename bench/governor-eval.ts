/**
 * `npm run bench -- governor-eval [govern-eval options]`: the governor's acceptance run
 * (`joulestream govern-eval`, same options and defaults: 4 simulated nodes × 8 GPUs, the Azure 2023
 * conversation and code traces' hour at 12×, arms max / static / governor, ~17 min on 2 cores).
 * Prints the table, then one JSON line: energy (kWh, from InfluxDB), attainment and savings per arm.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { helpText, parseCommand } from "../shared/config.ts";
import { governEvalCommand, type EvalSummary } from "../services/lab/mod.ts";

const parsed = parseCommand(governEvalCommand.spec, process.argv.slice(2));
if (parsed.help) {
  process.stdout.write(helpText(governEvalCommand.spec));
  process.exit(0);
}
const code = await governEvalCommand.run(parsed.config, parsed.positionals);
if (code !== 0) process.exit(code);
const { summary } = JSON.parse(readFileSync(join(parsed.config.out, "results.json"), "utf8")) as { summary: EvalSummary };
const figures = Object.fromEntries(summary.arms.map((a) => [a.arm, { energyKwh: a.energyKwh, jPerRequest: a.jPerRequest, attainmentPct: a.attainmentPct, savingPctVsMax: a.savingPctVsMax ?? 0, ...(a.gco2 !== undefined ? { gco2: a.gco2 } : {}) }]));
process.stdout.write(`${JSON.stringify({ bench: "governor-eval", setup: summary.setup, arms: figures, acceptance: summary.acceptance ?? null })}\n`);
